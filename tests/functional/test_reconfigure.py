"""A new layout while changes are queued, and per-change job selection, through the daemon."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.model.build import BuildResult
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.sandbox.seed import PROJECTS

pytestmark = pytest.mark.timeout(180)


def job(name: str, run: str, extra: str = "") -> str:
    return f"  - name: {name}\n    node: devstack-vm\n    run: {run}\n{extra}"


def layout(jobs: list[str], nova_jobs: list[str]) -> str:
    """A check pipeline; nova runs ``nova_jobs``, the other projects nothing."""
    return (
        "pipelines:\n"
        "  - name: check\n"
        "    manager: independent\n"
        "    trigger:\n"
        "      gerrit:\n"
        "        - event: patchset-created\n"
        "    success:\n"
        "      gerrit:\n"
        "        verified: 1\n"
        "    failure:\n"
        "      gerrit:\n"
        "        verified: -1\n"
        f"jobs:\n{''.join(jobs)}"
        "projects:\n"
        f"  - name: openstack/nova\n    check: [{', '.join(nova_jobs)}]\n"
        + "".join(f"  - name: {p}\n" for p in PROJECTS[1:])
    )


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(layout([job("slow", "sleep 60"), job("fast", "echo fast")], ["slow", "fast"]))
    sandbox = Sandbox(tmp_path / "sandbox", path)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def job_results(message: str) -> dict[str, str]:
    return dict(re.findall(r"^- (\S+) (?:\S+|\(no logs\)) : (\w+)", message, re.M))


def last_report(box: Sandbox, number: int) -> str:
    assert box.sim is not None
    return [m.text for m in box.sim.get_change(number).messages if m.author == "gatekeeper"][-1]


def test_new_layout_keeps_the_queue_and_cancels_dropped_jobs(box: Sandbox) -> None:
    assert box.app is not None and box.app.scheduler is not None and box.sim is not None
    scheduler = box.app.scheduler
    number, _ = box.push_change("openstack/nova", "Queued over a reload", {"a.txt": "a\n"})

    def slow_running() -> bool:
        [check] = scheduler.managers
        return any(
            b.job == "slow" and b.started_at is not None
            for i in check.items
            for b in i.builds.values()
        )

    box.wait_for(slow_running, 60, "the slow build to start")

    # An invalid layout changes nothing.
    box.layout.write_text("pipelines:\n  - name: check\n    manager: sideways\n")
    old = box.app.layout
    assert box.app.reconfigure() is False
    assert box.app.layout is old and scheduler.context.layout is old

    # A valid one: slow is gone, extra is new; the queued change stays and runs extra.
    box.layout.write_text(
        layout([job("fast", "echo fast"), job("extra", "echo extra")], ["fast", "extra"])
    )
    assert box.app.reconfigure() is True
    box.wait_until_settled()
    report = last_report(box, number)
    assert job_results(report) == {"fast": "SUCCESS", "extra": "SUCCESS"}, report
    assert box.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
    [slow] = [r for r in scheduler.context.builds.for_change(number) if r.job == "slow"]
    # Stopped on its worker (ABORTED), not left running to the end.
    assert slow.result == BuildResult.ABORTED.value
    assert box.app.worker is not None and "extra" in box.app.worker.job_names


def test_jobs_are_chosen_by_the_files_a_change_touches(box: Sandbox) -> None:
    """files: and skip-if, decided with the file list Gerrit reports for the change."""
    assert box.app is not None and box.sim is not None
    skip_docs = "    skip-if:\n      - all-files-match-any: ['^doc/.*$']\n"
    only_docs = "    files: ['^doc/.*$']\n"
    box.layout.write_text(
        layout(
            [job("unit", "echo unit", skip_docs), job("docs", "echo docs", only_docs)],
            ["unit", "docs"],
        )
    )
    assert box.app.reconfigure() is True

    code, _ = box.push_change("openstack/nova", "Code only", {"nova/x.py": "x = 1\n"})
    docs, _ = box.push_change("openstack/nova", "Docs only", {"doc/index.rst": "Docs\n"})
    box.wait_until_settled()
    assert job_results(last_report(box, code)) == {"unit": "SUCCESS"}
    assert job_results(last_report(box, docs)) == {"docs": "SUCCESS"}


FUNCTIONS = """
def tag_project(item, job, params):
    params["TAGGED"] = item.change.project + ":" + job.name
    params["ZUUL_BRANCH"] = None  # removing a parameter is allowed


def legacy_two_arguments(item, params):
    params["LEGACY"] = item.change.number


def broken(item, job, params):
    raise RuntimeError("no such cloud")
"""


def test_parameter_functions_shape_build_parameters(box: Sandbox) -> None:
    assert box.app is not None and box.sim is not None
    (box.layout.parent / "functions.py").write_text(FUNCTIONS)
    env = 'echo "TAGGED=$TAGGED LEGACY=$LEGACY BRANCH=${ZUUL_BRANCH-unset}"'
    jobs = [
        job("three", env, "    parameter-function: tag_project\n"),
        job("two", env, "    parameter-function: legacy_two_arguments\n"),
        job("bad", env, "    parameter-function: broken\n"),
    ]
    text = "includes:\n  - python-file: functions.py\n" + layout(jobs, ["three", "two", "bad"])
    box.layout.write_text(text)
    assert box.app.reconfigure() is True
    number, _ = box.push_change("openstack/nova", "Parameters", {"p.txt": "p\n"})
    box.wait_until_settled()
    report = last_report(box, number)
    assert job_results(report) == {"three": "SUCCESS", "two": "SUCCESS", "bad": "ERROR"}
    assert box.sim.get_change(number).votes["Verified"] == {"gatekeeper": -1}
    consoles = {
        r.job: (box.site.log_root / r.log_url[len(box.site.log_url) :] / "console.txt")  # type: ignore[operator]
        for r in box.app.scheduler.context.builds.for_change(number)  # type: ignore[union-attr]
        if r.log_url
    }
    assert "TAGGED=openstack/nova:three LEGACY= BRANCH=unset" in consoles["three"].read_text()
    assert f"TAGGED= LEGACY={number} BRANCH=master" in consoles["two"].read_text()
