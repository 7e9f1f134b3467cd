"""The gate through the daemon: changes tested on top of the ones ahead, merged in order.

Every assertion about what a build tested reads the git state the worker
built (``git log`` of each project in the job's workspace, saved in its
logs), not what the scheduler meant to send.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord, QueueItemRecord
from gatekeeper.dispatch import admin
from gatekeeper.dispatch.certs import Role, TlsFiles
from gatekeeper.errors import GatekeeperError
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.sandbox.seed import PROJECTS
from gatekeeper.scheduler.dependent import DependentPipelineManager

pytestmark = pytest.mark.timeout(240)


def gate_layout(flags: Path, window: int = 20, nova: str = "[integrated]", jobs: str = "") -> str:
    """nova and glance share 'integrated' (one queue); keystone runs 'solo' alone.

    The job saves what it was given and what it sees, waits for the test to
    release it (so builds overlap), and fails if its change is named in the
    'failing' file.
    """
    run = f"""|
      mkdir -p logs
      for p in openstack/nova openstack/glance openstack/keystone; do
        git -C "$p" log --format=%s > "logs/$(basename "$p").txt"
      done
      echo "$ZUUL_CHANGES" > logs/changes.txt
      echo "$ZUUL_REF" > logs/ref.txt
      git -C openstack/nova rev-parse HEAD > logs/nova-head.txt
      while [ ! -e {flags}/release ]; do sleep 0.05; done
      if grep -qx "$ZUUL_CHANGE" {flags}/failing 2>/dev/null; then exit 1; fi"""
    others = "".join(f"  - name: {p}\n" for p in PROJECTS[3:])
    return f"""
pipelines:
  - name: gate
    manager: dependent
    require:
      open: true
      approval:
        - code-review: 2
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - workflow: 1
    success:
      gerrit:
        verified: 2
        submit: true
    failure:
      gerrit:
        verified: -2
    window: {window}
    window-floor: 1
jobs:{jobs.replace("{flags}", str(flags))}
  - name: integrated
    node: devstack-vm
    run: {run}
    logs: [logs/**]
  - name: solo
    node: devstack-vm
    run: {run}
    logs: [logs/**]
projects:
  - name: openstack/nova
    gate: {nova}
  - name: openstack/glance
    gate: [integrated]
  - name: openstack/keystone
    gate: [solo]
{others}"""


# The jobs of gate_layout read flag files the test writes outside their
# nodes, which a confined job cannot see (tests/functional/test_confinement.py
# shows it): they run unconfined, by the seam of a bubblewrap that is not there.
UNCONFINED = {"name": "local", "bwrap": "/nonexistent/bwrap", "unconfined": True}
UNCONFINED_YAML = "    bwrap: /nonexistent/bwrap\n    unconfined: true\n"


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags"
    path.mkdir()
    return path


@pytest.fixture
def layout_text(flags: Path, request: pytest.FixtureRequest) -> str:
    """The gate layout, with the options a test gives through :func:`with_layout`."""
    return gate_layout(flags, **getattr(request, "param", {}))


@pytest.fixture
def gerrit(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(Gerrit version, transport of reads and reports): 3.x over SSH unless
    a test is run over :data:`DIALECTS`."""
    return getattr(request, "param", ("3.11.1", "ssh"))


#: The other dialect and the other transport, for the representative cases
#: (the rest run on the default alone, to keep the suite's time).
DIALECTS = pytest.mark.parametrize(
    "gerrit",
    [("3.11.1", "ssh"), ("2.13", "ssh"), ("3.11.1", "rest"), ("2.13", "rest")],
    ids=["3.11-ssh", "2.13-ssh", "3.11-rest", "2.13-rest"],
    indirect=True,
)


@pytest.fixture
def box(
    tmp_path: Path, flags: Path, layout_text: str, gerrit: tuple[str, str]
) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(layout_text)
    version, transport = gerrit
    sandbox = Sandbox(
        tmp_path / "sandbox",
        layout,
        worker_count=4,
        extra_site={"providers": [UNCONFINED]},
        gerrit_version=version,
        rest=transport == "rest",
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        (flags / "release").touch()  # never leave a build waiting
        sandbox.stop()


def gate(box: Sandbox) -> DependentPipelineManager:
    assert box.app is not None and box.app.scheduler is not None
    [manager] = box.app.scheduler.managers
    assert isinstance(manager, DependentPipelineManager)
    return manager


def push_and_approve(box: Sandbox, project: str, subject: str) -> int:
    number, ps = box.push_change(project, subject, {f"{subject.replace(' ', '-')}.txt": "x\n"})
    box.approve(number, ps)
    return number


def wait_all_started(box: Sandbox, count: int) -> None:
    manager = gate(box)

    def started() -> bool:
        builds = [b for i in list(manager.items) for b in list(i.builds.values())]
        return len(builds) == count and all(b.started_at for b in builds)

    box.wait_for(started, 90, f"{count} builds to be running")


def builds_of(box: Sandbox, number: int) -> list[BuildRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        query = (
            select(BuildRecord)
            .where(BuildRecord.change == number)
            .order_by(BuildRecord.dispatched_at)
        )
        return list(session.scalars(query))


def seen(box: Sandbox, record: BuildRecord, name: str) -> list[str]:
    """What the build's workspace held: ``git log`` subjects, or ZUUL_CHANGES."""
    root = box.site.log_root
    assert root is not None and record.log_url.startswith(box.site.log_url)
    logs = root / record.log_url[len(box.site.log_url) :] / "logs"
    return (logs / f"{name}.txt").read_text().split("\n")


def branch_subjects(box: Sandbox, project: str) -> list[str]:
    assert box.sim is not None
    return box.sim.state.project(project).repo.git("log", "--format=%s", "master").splitlines()


def merge_order(box: Sandbox) -> list[int]:
    """Change numbers in the order Gerrit merged them."""
    assert box.sim is not None
    events = box.sim.events()
    return [int(e["change"]["number"]) for e in events if e["type"] == "change-merged"]


@DIALECTS
def test_three_changes_tested_together_merge_in_order(box: Sandbox, flags: Path) -> None:
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    k = push_and_approve(box, "openstack/keystone", "Change K")
    wait_all_started(box, 4)  # all four at once: nothing waits for the one ahead
    manager = gate(box)
    assert manager.queue_of["openstack/nova"] == manager.queue_of["openstack/glance"]
    assert manager.queue_of["openstack/keystone"] != manager.queue_of["openstack/nova"]
    (flags / "release").touch()
    box.wait_until_settled()

    assert box.sim is not None
    for number in (a, b, c, k):
        assert box.sim.get_change(number).status == "MERGED"
        [record] = builds_of(box, number)
        assert record.result == "SUCCESS"
    [ra], [rb], [rc], [rk] = (builds_of(box, n) for n in (a, b, c, k))
    # B (glance) was tested with A in nova; C with A in nova and B in glance.
    assert "Change A" in seen(box, rb, "nova") and "Change B" in seen(box, rb, "glance")
    assert {"Change A", "Change C"} <= set(seen(box, rc, "nova"))
    assert "Change B" in seen(box, rc, "glance")
    assert "Change C" not in seen(box, ra, "nova") and "Change B" not in seen(box, ra, "glance")
    # K is in its own queue: tested alone.
    assert seen(box, rk, "changes")[0] == f"openstack/keystone:master:refs/changes/{k:02d}/{k}/1"
    # Merged in queue order.
    merged = merge_order(box)
    assert [n for n in merged if n != k] == [a, b, c]


@pytest.mark.parametrize("failing", ["A", "B"])
def test_a_failure_resets_the_items_behind_it(box: Sandbox, flags: Path, failing: str) -> None:
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    wait_all_started(box, 3)
    numbers = {"A": a, "B": b, "C": c}
    (flags / "failing").write_text(f"{numbers[failing]}\n")
    (flags / "release").touch()
    box.wait_until_settled()

    assert box.sim is not None
    status = {name: box.sim.get_change(n).status for name, n in numbers.items()}
    expected = {name: "NEW" if name == failing else "MERGED" for name in numbers}
    assert status == expected
    failed = box.sim.get_change(numbers[failing])
    assert failed.votes["Verified"] == {"gatekeeper": -2}
    behind = ["B", "C"] if failing == "A" else ["C"]
    for name in numbers:
        records = builds_of(box, numbers[name])
        if name in behind:
            # The first run was on top of the failing change; whatever it
            # came to (stopped, or finished first), it was run again without
            # that change, and the second run decided.
            first, last = records
            ref = f"/{numbers[failing]}/1"
            if first.result != "ABORTED":  # an aborted run may not have got far enough
                assert ref in seen(box, first, "changes")[0]
            assert ref not in seen(box, last, "changes")[0]
            assert last.result == "SUCCESS"
            assert f"Change {failing}" not in seen(box, last, "nova")
            assert f"Change {failing}" not in seen(box, last, "glance")
        else:
            # Items ahead of the failure are not disturbed; the failure runs once.
            assert len(records) == 1
    assert f"Change {failing}" not in branch_subjects(box, "openstack/nova")
    assert merge_order(box) == [n for name, n in numbers.items() if name != failing]


def test_every_build_of_an_item_tests_the_merger_state(box: Sandbox, flags: Path) -> None:
    """The merger publishes each item's state as refs/zuul/...; workers check it out."""
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    wait_all_started(box, 2)
    status = ask(box, "status")
    assert isinstance(status, dict)
    [gate_status] = [p for p in status["pipelines"] if p["name"] == "gate"]
    status_refs = {
        int(i["change"].split(",")[0]): i["zuul_ref"]
        for q in gate_status["queues"]
        for i in q["items"]
        if i["merge"] == "ok"
    }
    assert set(status_refs) == {a, b}
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [a, b]
    [record] = builds_of(box, b)
    [ref] = [line for line in seen(box, record, "ref") if line]
    assert ref.startswith("refs/zuul/master/Z")
    assert status_refs[b] == ref  # what `gatekeeper status --json` showed
    # B's build of nova (which B does not touch) is at the state the merger
    # made for B: nova's tip plus A, the change ahead.
    merger_repo = box.root / "state" / "merger" / "openstack" / "nova"
    published = subprocess.run(
        ["git", "-C", str(merger_repo), "rev-parse", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen(box, record, "nova-head")[0] == published
    assert "Change A" in seen(box, record, "nova")


def test_a_change_that_conflicts_with_the_one_ahead_is_a_merge_failure(
    box: Sandbox, flags: Path
) -> None:
    (flags / "release").touch()
    assert box.sim is not None
    a, a_ps = box.push_change("openstack/nova", "Change A", {"nova/shared.txt": "from A\n"})
    c, c_ps = box.push_change("openstack/nova", "Change C", {"nova/shared.txt": "from C\n"})
    b, b_ps = box.push_change("openstack/glance", "Change B", {"glance/b.txt": "B\n"})
    for number, ps in ((a, a_ps), (c, c_ps), (b, b_ps)):
        box.approve(number, ps)
    box.wait_until_settled()
    assert box.sim.get_change(a).status == "MERGED"
    assert box.sim.get_change(b).status == "MERGED"
    conflicted = box.sim.get_change(c)
    assert conflicted.status == "NEW" and conflicted.votes["Verified"] == {"gatekeeper": -2}
    [message] = [m.text for m in conflicted.messages if m.author == "gatekeeper"]
    assert "Merge failed" in message
    # The merger found it before any build: no node was spent on it.
    assert builds_of(box, c) == []
    assert merge_order(box) == [a, b]


def ask(box: Sandbox, function: str, **args: object) -> object:
    """An operator's request, over Gearman as the gatekeeper command sends it
    (with a token, and the operator certificate of the site's TLS directory)."""
    assert box.app is not None and box.app.site.gearman.tls_dir is not None
    token = box.operator_token()
    operator = TlsFiles.for_role(box.app.site.gearman.tls_dir, Role.OPERATOR)
    return admin.call(
        box.app.gearman_servers, function, dict(args), timeout=30, token=token, tls=operator
    )


def test_promote_moves_changes_to_the_head(box: Sandbox, flags: Path) -> None:
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    wait_all_started(box, 3)
    answer = ask(box, "promote", pipeline="gate", changes=[f"{c},1", f"{b},1"])
    assert answer == f"promoted openstack/nova {c},1, openstack/glance {b},1 in gate"
    status = ask(box, "status")
    assert isinstance(status, dict)
    [gate_status] = [p for p in status["pipelines"] if p["name"] == "gate"]
    [queue] = [q for q in gate_status["queues"] if len(q["items"]) == 3]
    assert [i["change"] for i in queue["items"]] == [f"{c},1", f"{b},1", f"{a},1"]
    assert queue["items"][2]["tested_with"] == [
        f"openstack/nova {c},1",
        f"openstack/glance {b},1",
    ]
    # The new order is what a restart would restore.
    with box.app.db.session() as session:  # type: ignore[union-attr]
        rows = session.scalars(select(QueueItemRecord).order_by(QueueItemRecord.position))
        assert [r.change for r in rows] == [c, b, a]
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [c, b, a]
    # A was tested again on top of C and B; the first runs were thrown away.
    last = builds_of(box, a)[-1]
    assert {"Change A", "Change C"} <= set(seen(box, last, "nova"))
    assert "Change B" in seen(box, last, "glance")


def test_enqueue_status_and_dequeue_by_an_operator(box: Sandbox, flags: Path) -> None:
    assert box.sim is not None
    number, ps = box.push_change("openstack/nova", "Not approved", {"n.txt": "n\n"})
    box.wait_until_settled()
    assert gate(box).items == []
    assert ask(
        box, "enqueue", pipeline="gate", project="openstack/nova", change=f"{number},{ps}"
    ) == (f"enqueued openstack/nova {number},{ps} in gate")
    wait_all_started(box, 1)
    status = ask(box, "status")
    assert isinstance(status, dict)
    [item] = [i for p in status["pipelines"] for q in p["queues"] for i in q["items"]]
    assert item["change"] == f"{number},{ps}" and item["jobs"] == ["integrated"]
    [build] = item["builds"]
    assert build["result"] is None and build["started_at"] is not None

    refusals = {
        "no pipeline 'nope'": (
            "enqueue",
            {"pipeline": "nope", "project": "openstack/nova", "change": f"{number},{ps}"},
        ),
        "is already in gate": (
            "enqueue",
            {"pipeline": "gate", "project": "openstack/nova", "change": f"{number},{ps}"},
        ),
        "not the current patchset": (
            "enqueue",
            {"pipeline": "gate", "project": "openstack/nova", "change": f"{number},{ps + 1}"},
        ),
        "expected a change as NUMBER,PATCHSET": (
            "dequeue",
            {"pipeline": "gate", "project": "openstack/nova", "change": "seven"},
        ),
    }
    for reason, (function, args) in refusals.items():
        with pytest.raises(GatekeeperError, match=reason):
            ask(box, function, **args)

    answer = ask(box, "dequeue", pipeline="gate", project="openstack/nova", change=f"{number},{ps}")
    assert answer == f"dequeued openstack/nova {number},{ps} from gate"
    box.wait_until_settled()
    [record] = builds_of(box, number)
    assert record.result in ("ABORTED", "CANCELED")
    assert [m for m in box.sim.get_change(number).messages if m.author == "gatekeeper"] == []


def change_id(tag: str) -> str:
    return "I" + hashlib.sha1(tag.encode()).hexdigest()


def push_on_top(box: Sandbox, project: str, parent: int, subject: str) -> tuple[int, int]:
    """A change whose git parent is change ``parent``'s current patchset."""
    assert box.sim is not None
    env = box.git_env("alice")
    work = box.root / f"work-{subject.replace(' ', '-')}"
    ref = box.sim.get_change(parent).current_patchset.ref

    def git(*args: str) -> None:
        subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True)

    git("clone", "-q", box.sim.git_url(project, "alice"), str(work))
    git("-C", str(work), "fetch", "-q", "origin", ref)
    git("-C", str(work), "checkout", "-q", "FETCH_HEAD")
    (work / f"{subject}.txt").write_text("on top\n")
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-qm", f"{subject}\n\nChange-Id: {change_id(subject)}")
    git("-C", str(work), "push", "-q", "origin", "HEAD:refs/for/master")
    [number] = [
        int(e["change"]["number"])
        for e in box.sim.events()
        if e["type"] == "patchset-created" and e["change"]["id"] == change_id(subject)
    ]
    return number, 1


@DIALECTS
def test_depends_on_across_projects_waits_then_merges_behind(box: Sandbox, flags: Path) -> None:
    (flags / "release").touch()
    assert box.sim is not None
    a, a_ps = box.push_change("openstack/nova", "Change A", {"a.txt": "a\n"})
    b, b_ps = box.push_change(
        "openstack/glance", f"Change B\n\nDepends-On: {box.sim.get_change(a).change_id}", {}
    )
    box.approve(b, b_ps)
    box.wait_until_settled()
    assert gate(box).items == [] and box.sim.get_change(b).status == "NEW"  # B waits for A
    box.approve(a, a_ps)
    box.wait_until_settled()
    assert merge_order(box) == [a, b]
    [rb] = builds_of(box, b)
    assert "Change A" in seen(box, rb, "nova")


@DIALECTS
def test_git_parent_is_queued_ahead(box: Sandbox, flags: Path) -> None:
    (flags / "release").touch()
    assert box.sim is not None
    a, a_ps = box.push_change("openstack/nova", "Change A", {"a.txt": "a\n"})
    c, c_ps = push_on_top(box, "openstack/nova", a, "Change C")
    box.approve(c, c_ps)
    box.wait_until_settled()
    assert box.sim.get_change(c).status == "NEW"  # waits: its parent is not approved
    box.approve(a, a_ps)
    box.wait_until_settled()
    assert merge_order(box) == [a, c]


def test_dependency_cycle_is_reported(box: Sandbox, flags: Path) -> None:
    (flags / "release").touch()
    assert box.sim is not None
    id_a, id_b = change_id("cycle A"), change_id("cycle B")
    a, a_ps = box.push_change("openstack/nova", f"A\n\nDepends-On: {id_b}", {}, change_id=id_a)
    b, b_ps = box.push_change("openstack/glance", f"B\n\nDepends-On: {id_a}", {}, change_id=id_b)
    box.approve(b, b_ps)
    box.approve(a, a_ps)
    box.wait_until_settled()
    for number in (a, b):
        change = box.sim.get_change(number)
        assert change.status == "NEW"
        [message] = [m.text for m in change.messages if m.author == "gatekeeper"]
        assert "dependency cycle" in message
    assert builds_of(box, a) == [] and builds_of(box, b) == []


def test_a_change_whose_dependency_fails_leaves_with_it(box: Sandbox, flags: Path) -> None:
    assert box.sim is not None
    a, a_ps = box.push_change("openstack/nova", "Change A", {"a.txt": "a\n"})
    b, b_ps = box.push_change(
        "openstack/glance", f"Change B\n\nDepends-On: {box.sim.get_change(a).change_id}", {}
    )
    (flags / "failing").write_text(f"{a}\n")
    box.approve(a, a_ps)
    box.approve(b, b_ps)
    wait_all_started(box, 2)
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == []
    [message] = [m.text for m in box.sim.get_change(b).messages if m.author == "gatekeeper"]
    assert f"depends on openstack/nova {a},1" in message


def with_layout(**options: Any) -> Any:
    """Run a test on ``gate_layout(flags, **options)``."""
    return pytest.mark.parametrize(
        "layout_text",
        [pytest.param(options, id="-".join(sorted(options)))],
        indirect=True,
    )


def builds_running(box: Sandbox) -> dict[int, list[str]]:
    """Change number -> jobs with a build started, for every queued item."""
    return {
        i.change.number: [b.job for b in i.builds.values() if b.started_at]
        for i in list(gate(box).items)
    }


@with_layout(window=2)
def test_window_limits_the_items_that_run(box: Sandbox, flags: Path) -> None:
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    box.wait_for(
        lambda: builds_running(box) == {a: ["integrated"], b: ["integrated"], c: []},
        90,
        "A and B to run while C waits outside the window",
    )
    queue = gate(box).queue_of["openstack/nova"]
    assert gate(box).window(queue) == 2
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [a, b, c]
    assert gate(box).window(queue) == 5  # grew by one per merge


HELD_JOB = """
  - name: held
    node: devstack-vm
    hold-following-changes: true
    run: while [ ! -e {flags}/release ]; do sleep 0.05; done"""


@with_layout(nova="[integrated, held]", jobs=HELD_JOB)
def test_hold_following_changes_holds_the_items_behind(box: Sandbox, flags: Path) -> None:
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    box.wait_for(
        lambda: builds_running(box) == {a: ["integrated", "held"], b: []},
        90,
        "A to run while B is held",
    )
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [a, b]
    [held] = [r for r in builds_of(box, a) if r.job == "held"]
    [rb] = builds_of(box, b)
    assert held.end_time is not None and rb.dispatched_at >= held.end_time


OPTIONAL_JOB = """
  - name: optional
    node: devstack-vm
    voting: false
    run: exit 1"""


@with_layout(nova="[integrated, optional]", jobs=OPTIONAL_JOB)
def test_a_failing_non_voting_job_does_not_stop_the_merge(box: Sandbox, flags: Path) -> None:
    (flags / "release").touch()
    a = push_and_approve(box, "openstack/nova", "Change A")
    box.wait_until_settled()
    assert box.sim is not None and box.sim.get_change(a).status == "MERGED"
    messages = [m.text for m in box.sim.get_change(a).messages if m.author == "gatekeeper"]
    [message] = [m for m in messages if "(gate pipeline)" in m]
    assert "- optional " in message and ": FAILURE in " in message and "(non-voting)" in message


def test_a_new_patchset_takes_the_change_out_and_resets_those_behind(
    box: Sandbox, flags: Path
) -> None:
    assert box.sim is not None
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    wait_all_started(box, 3)
    box.push_change(
        "openstack/glance",
        "Change B, again",
        {"b2.txt": "b\n"},
        change_id=box.sim.get_change(b).change_id,
    )
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [a, c]
    assert box.sim.get_change(b).status == "NEW"
    first, last = builds_of(box, c)
    assert first.result == "ABORTED" or "Change B" in seen(box, first, "glance")
    assert "Change B" not in seen(box, last, "glance")


@DIALECTS
def test_gerrit_refusing_to_merge_the_head_resets_those_behind(box: Sandbox, flags: Path) -> None:
    """The head passes but Gerrit will not submit it (here: never approved,
    enqueued by an operator): merge failure, and the change behind is tested
    again without it."""
    assert box.sim is not None
    x, x_ps = box.push_change("openstack/nova", "Change X", {"x.txt": "x\n"})
    ask(box, "enqueue", pipeline="gate", project="openstack/nova", change=f"{x},{x_ps}")
    b = push_and_approve(box, "openstack/glance", "Change B")
    wait_all_started(box, 2)
    (flags / "release").touch()
    box.wait_until_settled()
    assert merge_order(box) == [b]
    refused = box.sim.get_change(x)
    assert refused.status == "NEW" and refused.votes.get("Verified") == {"gatekeeper": -2}
    assert any("Merge failed" in m.text for m in refused.messages if m.author == "gatekeeper")
    first, last = builds_of(box, b)
    assert first.result == "ABORTED" or "Change X" in seen(box, first, "nova")
    assert "Change X" not in seen(box, last, "nova")


def quick_retries(box: Sandbox) -> None:
    """A stalled review is given up on after a second and tried again soon,
    many times: the test decides when the stall ends."""
    from gatekeeper.scheduler.reporter import GerritReporter

    assert box.app is not None and box.app.scheduler is not None
    reporter = box.app.scheduler.context.reporter
    assert isinstance(reporter, GerritReporter)
    reporter.timeout, reporter.backoff, reporter.backoff_max, reporter.attempts = 1.0, 0.2, 0.5, 400


def a_full_pass(box: Sandbox) -> None:
    """Wait until the scheduler thread has run a whole pass after now."""
    assert box.app is not None and box.app.scheduler is not None
    for _ in range(2):
        box.app.scheduler.call(lambda: None)


EXTRA_JOB = """
  - name: extra
    node: devstack-vm
    run: echo extra"""


def test_a_reconfigure_while_the_head_reports_starts_nothing_for_it(
    box: Sandbox, flags: Path
) -> None:
    """The head's report is out (Gerrit stalls on it) when a new layout gives
    its project one more job: the head is done testing, so that job does not
    run for it; it merges on the report it sent."""
    assert box.sim is not None and box.app is not None
    sim = box.sim
    quick_retries(box)
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    wait_all_started(box, 2)
    sim.hold_reviews(a, "gatekeeper")
    (flags / "release").touch()
    box.wait_for(lambda: sim.stalled_reviews(a) >= 1, 60, "A's report to stall")
    box.layout.write_text(gate_layout(flags, nova="[integrated, extra]", jobs=EXTRA_JOB))
    assert box.app.reconfigure() is True
    a_full_pass(box)
    assert [r.job for r in builds_of(box, a)] == ["integrated"]
    sim.release_reviews(a)
    box.wait_until_settled()
    assert merge_order(box) == [a, b]
    assert [r.job for r in builds_of(box, a)] == ["integrated"]


def test_a_new_patchset_while_the_head_reports_posts_no_merge_failure(
    box: Sandbox, flags: Path
) -> None:
    """A new patchset takes the head out while its submit is out; Gerrit then
    refuses to submit the old patchset. The change left the queue for its
    new patchset: no merge-failure comment (nor -2) tells its owner to rebase."""
    assert box.sim is not None
    sim = box.sim
    quick_retries(box)
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    wait_all_started(box, 2)
    sim.hold_reviews(a, "gatekeeper")
    (flags / "release").touch()
    box.wait_for(lambda: sim.stalled_reviews(a) >= 1, 60, "A's report to stall")
    box.push_change(
        "openstack/nova",
        "Change A, again",
        {"a2.txt": "a\n"},
        change_id=sim.get_change(a).change_id,
    )
    box.wait_for(lambda: all(i.change.number != a for i in gate(box).items), 60, "A to leave")
    sim.release_reviews(a)
    box.wait_until_settled()
    assert merge_order(box) == [b]
    messages = [m.text for m in sim.get_change(a).messages if m.author == "gatekeeper"]
    assert not [m for m in messages if "Merge failed" in m or "unable to be" in m], messages
    assert sim.get_change(a).votes.get("Verified") != {"gatekeeper": -2}
    # A leaving for a new patchset is no failure: only B's merge moved the window.
    assert gate(box).queue_for("openstack/nova").window == 21


def test_a_gate_made_independent_while_the_head_reports_reports_it_once(
    box: Sandbox, flags: Path
) -> None:
    """The head's report is out when a new layout makes the pipeline
    independent: the new manager, which holds the item now, lets it leave
    when the report is back; it is not tested nor reported again."""
    assert box.sim is not None and box.app is not None and box.app.scheduler is not None
    sim = box.sim
    quick_retries(box)
    a = push_and_approve(box, "openstack/nova", "Change A")
    wait_all_started(box, 1)
    sim.hold_reviews(a, "gatekeeper")
    (flags / "release").touch()
    box.wait_for(lambda: sim.stalled_reviews(a) >= 1, 60, "A's report to stall")
    box.layout.write_text(gate_layout(flags).replace("manager: dependent", "manager: independent"))
    assert box.app.reconfigure() is True
    sim.release_reviews(a)
    box.wait_until_settled()
    assert merge_order(box) == [a]
    messages = [m.text for m in sim.get_change(a).messages if m.author == "gatekeeper"]
    assert len([m for m in messages if "(gate pipeline)" in m]) == 1, messages
    assert [r.job for r in builds_of(box, a)] == ["integrated"]


def test_promote_while_the_head_reports_keeps_it_at_the_head(box: Sandbox, flags: Path) -> None:
    """The head's submit is out when an operator promotes a change behind it:
    the head may merge any moment, so the promoted change goes right behind
    it (tested on top of it), never ahead of a change it was not tested with."""
    assert box.sim is not None
    sim = box.sim
    quick_retries(box)
    a = push_and_approve(box, "openstack/nova", "Change A")
    b = push_and_approve(box, "openstack/glance", "Change B")
    c = push_and_approve(box, "openstack/nova", "Change C")
    wait_all_started(box, 3)
    sim.hold_reviews(a, "gatekeeper")
    (flags / "release").touch()
    box.wait_for(lambda: sim.stalled_reviews(a) >= 1, 60, "A's report to stall")
    ask(box, "promote", pipeline="gate", changes=[f"{c},1"])
    a_full_pass(box)
    assert [i.change.number for i in gate(box).items] == [a, c, b]
    sim.release_reviews(a)
    box.wait_until_settled()
    assert merge_order(box) == [a, c, b]
    assert "Change A" in seen(box, builds_of(box, c)[-1], "nova")


def test_queues_joined_while_heads_report_keep_them_at_the_head(box: Sandbox, flags: Path) -> None:
    """A new layout puts keystone in nova's change queue while the heads of
    both queues are reporting: they stay at the head of the joined queue
    (either may be merging), and what is behind is tested on top of both."""
    assert box.sim is not None and box.app is not None
    sim = box.sim
    quick_retries(box)
    a = push_and_approve(box, "openstack/nova", "Change A")
    c = push_and_approve(box, "openstack/nova", "Change C")
    k = push_and_approve(box, "openstack/keystone", "Change K")
    wait_all_started(box, 3)
    sim.hold_reviews(a, "gatekeeper")
    sim.hold_reviews(k, "gatekeeper")
    (flags / "release").touch()
    box.wait_for(
        lambda: sim.stalled_reviews(a) >= 1 and sim.stalled_reviews(k) >= 1,
        60,
        "A's and K's reports to stall",
    )
    joined = gate_layout(flags).replace(
        "  - name: openstack/keystone\n    gate: [solo]",
        "  - name: openstack/keystone\n    gate: [integrated]",
    )
    box.layout.write_text(joined)
    assert box.app.reconfigure() is True
    a_full_pass(box)
    assert [i.change.number for i in gate(box).items] == [a, k, c]
    sim.release_reviews(a)
    sim.release_reviews(k)
    box.wait_until_settled()
    assert sorted(merge_order(box)[:2]) == [a, k] and merge_order(box)[2:] == [c]
    last = builds_of(box, c)[-1]
    assert "Change A" in seen(box, last, "nova") and "Change K" in seen(box, last, "keystone")
