"""Job mutexes through the daemon: builds of jobs sharing a ``mutex`` never overlap.

Whether two builds overlapped is read from what the builds table recorded
(their start and end times, as the worker reported them), across items and
pipelines; and a restarted scheduler's restored running build keeps its mutex.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gatekeeper.cli import main
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.scheduler import operations
from tests.functional.test_gate import UNCONFINED
from tests.functional.test_restore import left_behind

pytestmark = pytest.mark.timeout(180)

PROJECT = "openstack/nova"


def layout(flags: Path) -> str:
    """``check`` and ``second`` both take every new patchset; their jobs
    share the ``devstack`` mutex. Each build waits for the test's 'release'
    file, so without the mutex they would all run at once (four workers)."""
    run = f"while [ ! -e {flags}/release ]; do sleep 0.05; done"
    return f"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit: {{verified: 1}}
    failure:
      gerrit: {{verified: -1}}
  - name: second
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
jobs:
  - name: ^mutex-.*$
    mutex: devstack
    node: devstack-vm
    run: "{run}"
  - name: free
    node: devstack-vm
    run: "true"
projects:
  - name: {PROJECT}
    check: [mutex-one, free]
    second: [mutex-two]
"""


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags"
    path.mkdir()
    return path


@pytest.fixture
def box(tmp_path: Path, flags: Path) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(layout(flags))
    # The jobs read the flag file outside their node: unconfined (see test_gate).
    sandbox = Sandbox(
        tmp_path / "sandbox", path, worker_count=4, extra_site={"providers": [UNCONFINED]}
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        (flags / "release").touch()  # never leave a build waiting
        sandbox.stop()


def status(box: Sandbox) -> dict[str, Any]:
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    return scheduler.call(lambda: operations.status(scheduler))


def waiting(box: Sandbox) -> list[tuple[str, str]]:
    """(job, mutex) of every job shown waiting for a mutex, in every pipeline."""
    return sorted(
        (job, mutex)
        for pipeline in status(box)["pipelines"]
        for queue in pipeline["queues"]
        for item in queue["items"]
        for job, mutex in item["waiting_for_mutex"].items()
    )


def mutex_builds(box: Sandbox) -> list[BuildRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        query = select(BuildRecord).where(BuildRecord.job.like("mutex-%"))
        return sorted(session.scalars(query), key=lambda r: r.start_time or 0.0)


def gatekeeper_status(box: Sandbox, tmp_path: Path) -> str:
    """What ``gatekeeper status`` prints, with a site file naming the sandbox's
    Gearman server and certificates."""
    assert box.app is not None
    [(host, port)] = box.app.gearman_servers
    site = tmp_path / "operator.yaml"
    site.write_text(
        f"state-dir: {box.site.state_dir}\n"
        f"gearman:\n  servers: [{{host: {host}, port: {port}}}]\n"
        f"  tls-dir: {box.site.gearman.tls_dir}\n"
    )
    result = CliRunner().invoke(main, ["status", "-c", str(site)])
    assert result.exit_code == 0, result.output
    return result.output


def test_builds_sharing_a_mutex_never_run_at_once(
    box: Sandbox, flags: Path, tmp_path: Path
) -> None:
    """Two changes, each in ``check`` and in ``second``: four builds of the one
    mutex, across items and pipelines, run one after another."""
    box.push_change(PROJECT, "First", {"a.txt": "a\n"})
    box.push_change(PROJECT, "Second", {"b.txt": "b\n"})

    def one_running_three_waiting() -> bool:
        started = [b for b in mutex_builds(box) if b.start_time is not None]
        return len(started) == 1 and len(waiting(box)) == 3

    # Four mutex jobs in all (two changes, two pipelines): one runs, three wait,
    # and the status says what they wait for.
    box.wait_for(one_running_three_waiting, 60, "one mutex build running, three waiting")
    assert {mutex for _, mutex in waiting(box)} == {"devstack"}
    assert len(mutex_builds(box)) == 1  # the waiting ones were not even dispatched
    # The web's status.json says so too, for each job held back.
    assert box.app is not None
    url = box.app.web_url + "status.json"

    def web_waiting() -> list[str]:
        status = httpx2.get(url, timeout=10).json()
        return [
            job["waiting_for_mutex"]
            for pipeline in status["pipelines"]
            for queue in pipeline["change_queues"]
            for heads in queue["heads"]
            for item in heads
            for job in item["jobs"]
            if job["waiting_for_mutex"]
        ]

    box.wait_for(lambda: web_waiting() == ["devstack"] * 3, 30, "status.json to show the waits")
    # And `gatekeeper status`, asking the running scheduler as an operator would.
    printed = gatekeeper_status(box, tmp_path)
    assert printed.count("waiting for mutex devstack") == 3, printed

    (flags / "release").touch()
    box.wait_until_settled()

    records = mutex_builds(box)
    assert [r.result for r in records] == ["SUCCESS"] * 4
    assert {(r.pipeline, r.job) for r in records} == {
        ("check", "mutex-one"),
        ("second", "mutex-two"),
    }
    for earlier, later in itertools.pairwise(records):
        assert earlier.end_time is not None and later.start_time is not None
        assert earlier.end_time <= later.start_time, (earlier.job, later.job)
    assert waiting(box) == []


RESTORE_LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit: {verified: 1}
    failure:
      gerrit: {verified: -1}
jobs:
  - name: unit
    mutex: db
    node: devstack-vm
    run: "true"
  - name: functional
    mutex: db
    node: devstack-vm
    run: "true"
projects:
  - name: openstack/nova
    check: [unit, functional]
"""


@pytest.fixture
def restarted(tmp_path: Path) -> Iterator[tuple[Sandbox, Database]]:
    """A simulator and a database; the daemon is started by the test."""
    path = tmp_path / "layout.yaml"
    path.write_text(RESTORE_LAYOUT)
    (tmp_path / "sandbox" / "state").mkdir(parents=True)
    url = f"sqlite:///{tmp_path / 'sandbox' / 'state' / 'gatekeeper.db'}"
    sandbox = Sandbox(tmp_path / "sandbox", path, database=url)
    sandbox.start_gerrit()
    database = Database(url)
    database.migrate()
    try:
        yield sandbox, database
    finally:
        sandbox.stop()
        database.dispose()


def test_a_restored_running_build_keeps_its_mutex(
    restarted: tuple[Sandbox, Database],
) -> None:
    """A previous run left ``unit`` running on a worker elsewhere (its row has a
    fresh heartbeat): the restarted scheduler re-attaches it, and
    ``functional``, which shares its mutex, waits until it has finished."""
    box, db = restarted
    number, _ = box.push_change(PROJECT, "A change", {"a.txt": "a\n"})
    item, running = left_behind(db, number, 1, None, heartbeat=time.time())

    box.start_daemon()
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    box.wait_for(lambda: scheduler.restored is not None, 30, "the restore")
    assert scheduler.restored is not None and scheduler.restored.attached == 1
    box.wait_for(lambda: waiting(box) == [("functional", "db")], 30, "functional to wait")
    with db.session() as session:
        jobs = [r.job for r in session.scalars(select(BuildRecord))]
    assert jobs == ["unit"]  # functional was not dispatched meanwhile

    # The worker elsewhere finishes and records its result, as workers do.
    with db.session() as session:
        record = session.get(BuildRecord, running)
        assert record is not None
        record.result, record.end_time = "SUCCESS", time.time()
    box.wait_for(lambda: scheduler.is_settled(), 60, "the item to be reported")

    with db.session() as session:
        unit = session.get(BuildRecord, running)
        [functional] = session.scalars(select(BuildRecord).where(BuildRecord.job == "functional"))
    assert unit is not None and unit.end_time is not None
    assert functional.result == "SUCCESS" and functional.item_uuid == item
    assert functional.start_time is not None and unit.end_time <= functional.start_time
