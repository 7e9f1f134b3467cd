"""Routing on OpenStack's 2015 production layout, with events in Gerrit's real shapes.

Events are the documented 2.13 lines of ``../shared/testdata/gerrit`` with
the fields a scenario needs changed; they go through the same parser and
the same routing code as the daemon's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.cli import main
from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.change import Change
from gatekeeper.scheduler import dryrun, job_filter, routing
from gatekeeper.scheduler.dryrun import route_event, route_lines
from gatekeeper.scheduler.routing import Router

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
OPENSTACK = SHARED / "layouts" / "openstack-project-config-2015.yaml"
EVENTS = SHARED / "gerrit" / "events-documented-2.13.jsonl"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def layout() -> Layout:
    if not OPENSTACK.exists():
        pytest.skip(f"{OPENSTACK} is absent (../shared is not beside the repository)")
    return load_layout(OPENSTACK, includes=False)


@pytest.fixture(scope="module")
def shapes() -> dict[str, dict[str, Any]]:
    """The first documented event of each type, as Gerrit 2.13 sent it."""
    if not EVENTS.exists():
        pytest.skip(f"{EVENTS} is absent (../shared is not beside the repository)")
    found: dict[str, dict[str, Any]] = {}
    for line in EVENTS.read_text().splitlines():
        data = json.loads(line)
        found.setdefault(data["type"], data)
    return found


def event_from(shape: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> Any:
    data = copy.deepcopy(shape)
    edit(data)
    event = parse_event(json.dumps(data))
    assert event is not None
    return event


def routed(layout: Layout, event: Any) -> dict[str, Any]:
    return route_event(Router(layout), event)


def pipelines(result: dict[str, Any]) -> list[str]:
    return [entry["pipeline"] for entry in result["enqueue"]]


def entry(result: dict[str, Any], pipeline: str) -> dict[str, Any]:
    [found] = [e for e in result["enqueue"] if e["pipeline"] == pipeline]
    return found


def comment_event(shapes: dict[str, dict[str, Any]], text: str, approvals: list[Any]) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["comment"] = text
        data["author"] = {"name": "Bob", "email": "bob@example.org", "username": "bob"}
        data["approvals"] = approvals

    return event_from(shapes["comment-added"], edit)


# -- recheck ----------------------------------------------------------------

RECHECKS = [
    "recheck",
    "Recheck",
    "RECHECK",
    "reverify",
    "recheck bug 1234567",
    "recheck no bug",
    "Patch Set 2:\n\nrecheck",
    "Patch Set 2: Code-Review+1\n\nrecheck",
    "Patch Set 12: Code-Review-1 Workflow-1\n\nreverify",
    "   recheck",
]
NOT_RECHECKS = [
    "please recheck",
    "Patch Set 2:\n\nLooks good, recheck later",
    "I will not recheck this",
    "rechek",
    "",
]


@pytest.mark.parametrize("text", RECHECKS, ids=lambda t: repr(t)[:40])
def test_recheck_spellings_enter_check(layout: Layout, shapes: Any, text: str) -> None:
    result = routed(layout, comment_event(shapes, text, []))
    assert pipelines(result) == ["check"]
    check = entry(result, "check")
    assert check["change"] == "123456,1" and check["project"] == "openstack/nova"
    # Whether patchset 2 is still current is Gerrit's to say.
    assert check["unchecked"] == ["current-patchset: true"]
    assert "gate-nova-pep8" in check["jobs"]


@pytest.mark.parametrize("text", NOT_RECHECKS, ids=lambda t: repr(t)[:40])
def test_other_comments_do_not(layout: Layout, shapes: Any, text: str) -> None:
    assert routed(layout, comment_event(shapes, text, []))["enqueue"] == []


# -- approvals --------------------------------------------------------------


def test_workflow_transition_enters_gate_and_repeated_vote_does_not(
    layout: Layout, shapes: Any
) -> None:
    cast = [
        {"type": "Code-Review", "description": "Code-Review", "value": "2"},
        {"type": "Workflow", "description": "Workflow", "value": "1", "oldValue": "0"},
    ]
    result = routed(layout, comment_event(shapes, "Patch Set 1: Workflow+1", cast))
    assert "gate" in pipelines(result)
    gate = entry(result, "gate")
    # Jenkins' Verified vote is not in bob's event: only Gerrit can confirm it.
    assert "require approval verified: [1, 2] by jenkins" in gate["unchecked"]
    assert "gate-tempest-dsvm-full" in gate["jobs"]

    repeated = [{k: v for k, v in a.items() if k != "oldValue"} for a in cast]
    result = routed(layout, comment_event(shapes, "Patch Set 1:\n\nnice", repeated))
    assert "gate" not in pipelines(result)


def test_workflow_minus_one_is_not_an_approval(layout: Layout, shapes: Any) -> None:
    cast = [{"type": "Workflow", "description": "Workflow", "value": "-1", "oldValue": "0"}]
    result = routed(layout, comment_event(shapes, "Patch Set 1: Workflow-1", cast))
    assert pipelines(result) == []


def test_gate_requirements_are_decided_with_gerrits_view(layout: Layout, shapes: Any) -> None:
    """The scheduler's path: the change as Gerrit reports it decides what the event cannot."""
    cast = [{"type": "Workflow", "description": "Workflow", "value": "1", "oldValue": "0"}]
    event = comment_event(shapes, "Patch Set 1: Workflow+1", cast)
    gate = layout.pipeline("gate")
    base = dict(project="openstack/nova", branch="master", number=123456, patchset=1)
    verified = Change(
        **base,  # type: ignore[arg-type]
        approvals={"Verified": {"jenkins": 1}, "Workflow": {"bob": 1}},
        files=["/COMMIT_MSG", "nova/compute/api.py"],
    )
    decision = routing.decide(layout, gate, event, lambda: verified)
    assert decision is not None and decision.enqueue and decision.unchecked == []
    unverified = Change(**base, approvals={"Workflow": {"bob": 1}}, files=[])  # type: ignore[arg-type]
    decision = routing.decide(layout, gate, event, lambda: unverified)
    assert decision is not None and not decision.enqueue
    assert decision.reason == "missing approval verified: [1, 2] by jenkins"


# -- branches and files -----------------------------------------------------


def new_patchset(shapes: Any, project: str = "openstack/nova", branch: str = "master") -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["change"]["project"] = project
        data["change"]["branch"] = branch
        data["project"] = project
        data["refName"] = f"refs/heads/{branch}"

    return event_from(shapes["patchset-created"], edit)


def test_stable_branch_drops_jobs_whose_branch_regex_excludes_it(
    layout: Layout, shapes: Any
) -> None:
    master = entry(routed(layout, new_patchset(shapes)), "check")["jobs"]
    kilo = entry(routed(layout, new_patchset(shapes, branch="stable/kilo")), "check")["jobs"]
    # ^(?!stable/kilo).*$ and friends in the layout's jobs: section.
    for job in ("gate-nova-python34", "gate-grenade-dsvm", "gate-nova-pep8-constraints"):
        assert job in master and job not in kilo
    assert "gate-nova-pep8" in kilo and "gate-tempest-dsvm-full" in kilo
    # A job that runs only on stable branches (branch: ^stable/) is not on master.
    assert "gate-grenade-dsvm-partial-ncpu" not in master


def test_docs_only_change_skips_expensive_jobs(layout: Layout, shapes: Any) -> None:
    event = new_patchset(shapes)
    docs = ["/COMMIT_MSG", "doc/source/index.rst", "api-guide/source/index.rst"]
    code = ["/COMMIT_MSG", "nova/compute/api.py"]
    check = layout.pipeline("check")

    def jobs(files: list[str] | None) -> job_filter.JobSelection:
        change = dryrun.change_from_event(event)
        assert change is not None
        change.files = files
        decision = routing.decide(layout, check, event, lambda: change)
        assert decision is not None and decision.enqueue
        return decision.selection

    docs_jobs, code_jobs = jobs(docs), jobs(code)
    for job in ("gate-tempest-dsvm-full", "gate-nova-python27", "gate-grenade-dsvm"):
        assert job in code_jobs.job_names()
        assert job not in docs_jobs.job_names()
        assert docs_jobs.skipped[job] == "skip-if holds"
    # Docs and style checks still run on a docs-only change.
    assert {"gate-nova-docs", "gate-nova-pep8"} <= set(docs_jobs.job_names())
    # A change that edits only its commit message runs them all (nothing to skip on).
    assert "gate-tempest-dsvm-full" in jobs(["/COMMIT_MSG"]).job_names()


def test_event_without_files_says_which_jobs_it_cannot_decide(layout: Layout, shapes: Any) -> None:
    check = entry(routed(layout, new_patchset(shapes)), "check")
    undecided = check["undecided"]
    assert undecided["reason"] == job_filter.NEEDS_FILES
    assert "gate-tempest-dsvm-full" in undecided["jobs"]  # skip-if on files
    assert "gate-nova-requirements" in undecided["jobs"]  # files: on requirements
    assert "gate-nova-pep8" not in undecided["jobs"]
    assert set(undecided["jobs"]) <= set(check["jobs"])


def test_skip_if_is_the_last_matching_entrys_as_in_zuul_v2(layout: Layout) -> None:
    """Two regex entries give tempest jobs a skip-if; as in Zuul v2 the later
    one (neutron's) replaces the earlier (requirements-only changes), so a
    nova requirements change still runs tempest."""
    selection = job_filter.select_jobs(
        layout, "openstack/nova", "check", "master", files=["/COMMIT_MSG", "requirements.txt"]
    )
    assert "gate-tempest-dsvm-full" in selection.job_names()
    assert "gate-nova-requirements" in selection.job_names()  # files: ^.*requirements.*$


# -- refs and unknown projects ---------------------------------------------


def ref_updated(shapes: Any, ref: str, old: str = "1" * 40, new: str = "2" * 40) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["refUpdate"].update(refName=ref, oldRev=old, newRev=new)

    return event_from(shapes["ref-updated"], edit)


def test_tag_and_branch_updates(layout: Layout, shapes: Any) -> None:
    tag = routed(layout, ref_updated(shapes, "refs/tags/13.0.0", old="0" * 40))
    assert pipelines(tag) == ["tag", "release"]
    assert all(e["change"] is None and e["ref"] == "refs/tags/13.0.0" for e in tag["enqueue"])
    assert "nova-tarball" in entry(tag, "release")["jobs"]
    # post's trigger (ref: ^(?!refs/).*$) was written for Gerrit's old short
    # names; a branch update matches it by full or by short name.
    for name in ("refs/heads/master", "master"):
        branch = routed(layout, ref_updated(shapes, name))
        assert pipelines(branch) == ["post"]
        assert "nova-branch-tarball" in entry(branch, "post")["jobs"]
    deleted = route_event(
        Router(layout), ref_updated(shapes, "refs/heads/stable/juno", new="0" * 40)
    )
    assert pipelines(deleted) == []


def test_project_not_in_layout(layout: Layout, shapes: Any) -> None:
    result = routed(layout, new_patchset(shapes, project="example/not-in-layout"))
    assert result == {"type": "patchset-created", "enqueue": []}


def test_closed_change_is_rejected_with_the_reason(layout: Layout, shapes: Any) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["comment"] = "recheck"
        data["change"]["status"] = "ABANDONED"

    result = routed(layout, event_from(shapes["comment-added"], edit))
    assert result["enqueue"] == []
    assert {"pipeline": "check", "reason": "change is not open"} in result["rejected"]


# -- the command ------------------------------------------------------------


def test_route_command_prints_one_line_per_event(tmp_path: Path, layout: Layout) -> None:
    lines = EVENTS.read_text().splitlines()
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([lines[0], "not json", "", '{"no": "type"}', *lines[1:]]) + "\n")
    result = CliRunner().invoke(
        main, ["route", "--layout", str(OPENSTACK), "--no-includes", str(source)]
    )
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, *range(4, len(lines) + 4)]
    assert out[1]["error"].startswith("not JSON") and "not json" in out[1]["error"]
    assert "no 'type'" in out[2]["error"]
    assert pipelines(out[0]) == ["check"]
    assert sum("error" in o for o in out) == 2


def test_route_command_reads_stdin_and_refuses_a_bad_layout(tmp_path: Path) -> None:
    bad = tmp_path / "layout.yaml"
    bad.write_text("pipelines:\n  - name: check\n    manager: Independent\n")
    result = CliRunner().invoke(main, ["route", "--layout", str(bad), "-"], input="{}\n")
    assert result.exit_code != 0
    assert f"{bad}:3" in result.output


# -- properties -------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@st.composite
def mutated_events(draw: st.DrawFn, shapes: dict[str, dict[str, Any]]) -> str:
    """A real event shape with random keys replaced by random JSON values."""
    shape = copy.deepcopy(draw(st.sampled_from(sorted(shapes.items())))[1])
    targets = [shape, *(v for v in shape.values() if isinstance(v, dict))]
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(targets))
        keys = sorted(target) or ["x"]
        target[draw(st.sampled_from(keys))] = draw(_values)
    return json.dumps(shape)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_events_never_crash_routing(
    layout: Layout, shapes: dict[str, dict[str, Any]], data: st.DataObject
) -> None:
    line = data.draw(st.one_of(mutated_events(shapes), st.text(max_size=200)))
    for result in route_lines(layout, [line]):
        assert result["line"] == 1
        assert ("error" in result) != ("enqueue" in result)
        json.dumps(result)
