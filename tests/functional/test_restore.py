"""What a restarted scheduler makes of the queue rows it finds.

Each test leaves in the database what a previous run would have left at
some moment (a report half sent, a build whose worker died, a change that
moved on meanwhile), starts gatekeeper against the Gerrit simulator, and
checks what it does: reports once, runs again what was lost, drops what
Gerrit says is done with.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import gear
import pytest
from sqlalchemy import select

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord, FailureMatch, QueueItemRecord
from gatekeeper.dispatch.certs import Role
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.model.change import change_ref
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.db import postgres_server_url, scratch_postgres_database
from tests.fixtures.gearmand import issued

pytestmark = pytest.mark.timeout(120)

PROJECT = "openstack/nova"

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
jobs:
  - name: unit
    node: devstack-vm
    run: "true"
projects:
  - name: openstack/nova
    check: [unit]
"""


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with scratch_postgres_database(postgres_server_url()) as url:
            yield url
    else:
        (tmp_path / "sandbox" / "state").mkdir(parents=True)
        yield f"sqlite:///{tmp_path / 'sandbox' / 'state' / 'gatekeeper.db'}"


@pytest.fixture
def box(tmp_path: Path, database_url: str) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", layout, database=database_url)
    sandbox.start_gerrit()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def db(box: Sandbox, database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def left_behind(
    db: Database,
    number: int,
    patchset: int,
    result: str | None,
    reporting_since: float | None = None,
    heartbeat: float | None = None,
    tested_since: float | None = None,
    pipeline: str = "check",
    project: str = PROJECT,
    job: str = "unit",
    position: int = 0,
    tested_with: list[str] | None = None,
    worker_identity: str = "worker:elsewhere",
) -> tuple[str, str]:
    """A queue row and one build of it, as a previous run left them (its
    start believed by that run's scheduler: the row names the worker's
    certificate, unless ``worker_identity`` is empty)."""
    item, build = uuid.uuid4().hex, uuid.uuid4().hex
    now = time.time()
    with db.session() as session:
        session.add(
            QueueItemRecord(
                uuid=item,
                pipeline=pipeline,
                position=position,
                project=project,
                branch="master",
                change=number,
                patchset=patchset,
                ref=change_ref(number, patchset),
                old_rev="",
                new_rev="",
                enqueued_at=now - 60 + position,
                event_received_at=None,
                tested_with=None if tested_with is None else json.dumps(tested_with),
                tested_since=tested_since,
                reporting_since=reporting_since,
            )
        )
        session.add(
            BuildRecord(
                uuid=build,
                job=job,
                project=project,
                change=number,
                patchset=patchset,
                pipeline=pipeline,
                node="",
                provider="local",
                worker="a-worker-elsewhere",
                dispatched_at=now - 50 + position,
                start_time=now - 45 + position,
                end_time=now - 5 if result else None,
                result=result,
                log_url="",
                item_uuid=item,
                attempt=1,
                heartbeat=heartbeat,
                worker_identity=worker_identity,
            )
        )
    return item, build


def reports(box: Sandbox, number: int) -> list[str]:
    assert box.sim is not None
    return [
        m.text
        for m in box.sim.get_change(number).messages
        if m.author == "gatekeeper" and "(check pipeline)" in m.text
    ]


def builds_of(db: Database, item: str) -> list[BuildRecord]:
    with db.session() as session:
        return list(
            session.scalars(
                select(BuildRecord)
                .where(BuildRecord.item_uuid == item)
                .order_by(BuildRecord.dispatched_at)
            )
        )


def rows(db: Database) -> list[str]:
    with db.session() as session:
        return [r.uuid for r in session.scalars(select(QueueItemRecord))]


def start(box: Sandbox) -> None:
    box.start_daemon()
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    # Events from before the start never reach this daemon's stream, so
    # "settled" here is: restored, and every queue empty again.
    box.wait_for(
        lambda: scheduler.restored is not None and scheduler.is_settled(), 60, "the queue to empty"
    )


def push(box: Sandbox) -> int:
    number, _ = box.push_change(PROJECT, "A change", {"a.txt": "a\n"})
    return number


def test_a_report_that_reached_gerrit_is_not_sent_again(box: Sandbox, db: Database) -> None:
    number = push(box)
    marked = time.time()
    box.review("gatekeeper", number, 1, "--message", "Build succeeded (check pipeline).")
    _item, _ = left_behind(db, number, 1, "SUCCESS", reporting_since=marked)

    start(box)

    assert len(reports(box, number)) == 1
    assert rows(db) == []
    assert box.app is not None and box.app.scheduler is not None
    assert box.app.scheduler.restored is not None
    assert box.app.scheduler.restored.dropped == [f"{PROJECT} {number},1"]


def test_another_comment_by_gatekeeper_is_not_the_report(box: Sandbox, db: Database) -> None:
    number = push(box)
    marked = time.time()
    box.review("gatekeeper", number, 1, "--message", "Starting gate jobs.")
    left_behind(db, number, 1, "SUCCESS", reporting_since=marked)

    start(box)

    assert len(reports(box, number)) == 1
    assert rows(db) == []


def test_a_report_that_did_not_reach_gerrit_is_sent_once(box: Sandbox, db: Database) -> None:
    number = push(box)
    item, build = left_behind(db, number, 1, "SUCCESS", reporting_since=time.time())

    start(box)

    [report] = reports(box, number)
    assert "- unit " in report and ": SUCCESS" in report
    assert box.sim is not None and box.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
    assert [b.uuid for b in builds_of(db, item)] == [build]  # its result was kept, not re-run
    assert rows(db) == []


def test_a_failure_recognised_before_a_restart_is_named_in_the_report(
    box: Sandbox, db: Database
) -> None:
    """The worker stored what it recognised in the failed build's logs and
    carried it in its result to the scheduler that then stopped: the
    restarted scheduler reads it back, so its report still names the known
    failure (and one whose signature is gone by its id)."""
    number = push(box)
    _, build = left_behind(db, number, 1, "FAILURE")
    box.failures_dir.mkdir(parents=True, exist_ok=True)
    (box.failures_dir / "eof.yaml").write_text(
        "id: libvirt-eof\n"
        "description: libvirt closed the connection under nova-compute\n"
        "bug: https://bugs.example.org/1643911\n"
        "patterns: ['End of file while reading data']\n"
    )
    with db.session() as session:
        for signature, line in (("libvirt-eof", 7), ("libvirt-eof", 9), ("retired-one", 3)):
            session.add(
                FailureMatch(
                    build_uuid=build,
                    signature=signature,
                    file="logs/screen-n-cpu.txt",
                    line_number=line,
                    line="libvirtError: End of file while reading data",
                    matched_at=time.time(),
                )
            )

    start(box)

    [report] = reports(box, number)
    assert ": FAILURE" in report
    recognised = [line.strip() for line in report.splitlines() if "Recognised:" in line]
    assert recognised == [
        "Recognised: libvirt closed the connection under nova-compute "
        "https://bugs.example.org/1643911",
        "Recognised: retired-one",
    ]


def test_a_build_whose_worker_died_runs_again(box: Sandbox, db: Database) -> None:
    number = push(box)
    item, lost = left_behind(db, number, 1, None, heartbeat=time.time() - 600)

    start(box)

    records = builds_of(db, item)
    assert next(r.uuid for r in records) == lost
    assert [r.result for r in records] == ["CANCELED", "SUCCESS"]
    assert len(reports(box, number)) == 1
    assert rows(db) == []


def test_a_result_from_before_a_reset_does_not_count(box: Sandbox, db: Database) -> None:
    """A gate reset forgot the build (it tested another state) and the daemon
    stopped before the job ran again: the old result must not decide."""
    number = push(box)
    item, old = left_behind(db, number, 1, "FAILURE", tested_since=time.time() - 10)

    start(box)

    records = builds_of(db, item)
    assert records[0].uuid == old and [r.result for r in records] == ["FAILURE", "SUCCESS"]
    [report] = reports(box, number)
    assert ": SUCCESS" in report and ": FAILURE" not in report


def test_a_build_still_running_elsewhere_is_reattached(box: Sandbox, db: Database) -> None:
    number = push(box)
    item, running = left_behind(db, number, 1, None, heartbeat=time.time())

    box.start_daemon()
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    box.wait_for(lambda: scheduler.restored is not None, 30, "the restore")
    assert scheduler.restored is not None and scheduler.restored.attached == 1
    assert reports(box, number) == []
    # The worker elsewhere finishes and records its result, as workers do.
    with db.session() as session:
        record = session.get(BuildRecord, running)
        assert record is not None
        record.result, record.end_time = "FAILURE", time.time()
    box.wait_for(lambda: rows(db) == [], 30, "the item to be reported")

    [report] = reports(box, number)
    assert "- unit " in report and ": FAILURE" in report
    assert [r.uuid for r in builds_of(db, item)] == [running]


def test_a_running_build_no_scheduler_saw_start_is_run_again(box: Sandbox, db: Database) -> None:
    """A row with a fresh heartbeat but no verified worker (anyone with the
    database could have written it) is not re-attached: the build runs again
    on a worker whose start is checked, and its result, not the row's, counts."""
    number = push(box)
    item, unverified = left_behind(db, number, 1, None, heartbeat=time.time(), worker_identity="")

    box.start_daemon()
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    box.wait_for(lambda: scheduler.restored is not None, 30, "the restore")
    assert scheduler.restored is not None
    assert (scheduler.restored.attached, scheduler.restored.lost) == (0, 1)
    box.wait_for(lambda: rows(db) == [], 60, "the item to be reported")

    [report] = reports(box, number)
    assert "- unit " in report and ": SUCCESS" in report
    first, again = builds_of(db, item)
    assert (first.uuid, first.result) == (unverified, "CANCELED")
    assert again.result == "SUCCESS" and again.worker_identity.startswith("worker:")


def test_a_reattached_build_is_stopped_on_its_worker(box: Sandbox, db: Database) -> None:
    """Abandoning the change stops the build on the worker that runs it, though
    this scheduler never submitted it: the stop goes to ``stop:<worker>``."""
    number = push(box)
    _item, running = left_behind(db, number, 1, None, heartbeat=time.time())
    box.start_daemon()
    assert box.app is not None and box.app.scheduler is not None
    scheduler = box.app.scheduler
    box.wait_for(lambda: scheduler.restored is not None, 30, "the restore")
    host, port = box.app.gearman_servers[0]
    assert box.app.site.gearman.tls_dir is not None
    # A worker of this site on another host: its own certificate, by its name.
    tls = issued(box.app.site.gearman.tls_dir, Role.WORKER, "a-worker-elsewhere")
    elsewhere = gear.TextWorker("a-worker-elsewhere")
    elsewhere.addServer(host, port, **gear_kwargs(tls))
    elsewhere.waitForServer()
    elsewhere.registerFunction("stop:a-worker-elsewhere")
    try:
        box.review("alice", number, 1, "--abandon")
        job = elsewhere.getJob()
        assert json.loads(job.arguments) == {"uuid": running}
        job.sendWorkComplete("{}")
    finally:
        elsewhere.shutdown()
    box.wait_for(lambda: rows(db) == [], 30, "the item to leave")
    with db.session() as session:
        record = session.get(BuildRecord, running)
        assert record is not None and record.result == "CANCELED"


def test_a_change_that_moved_on_leaves_quietly(box: Sandbox, db: Database) -> None:
    number = push(box)
    assert box.sim is not None
    change_id = box.sim.get_change(number).change_id
    item, _build = left_behind(db, number, 1, None)
    box.push_change(PROJECT, "A change, again", {"a.txt": "b\n"}, change_id=change_id)

    start(box)

    assert rows(db) == []
    assert [r.result for r in builds_of(db, item)] == ["CANCELED"]
    assert box.app is not None and box.app.scheduler is not None
    assert box.app.scheduler.restored is not None
    assert box.app.scheduler.restored.dropped == [f"{PROJECT} {number},1"]


# -- the gate ------------------------------------------------------------------


@pytest.fixture
def gate_box(tmp_path: Path) -> Iterator[Sandbox]:
    from tests.functional.test_gate import UNCONFINED, gate_layout

    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "release").touch()
    layout = tmp_path / "gate.yaml"
    layout.write_text(gate_layout(flags))
    sandbox = Sandbox(tmp_path / "gate-sandbox", layout, extra_site={"providers": [UNCONFINED]})
    sandbox.start_gerrit()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def gate_row(
    db: Database, number: int, project: str, position: int, tested_with: list[str]
) -> tuple[str, str]:
    """A gate item whose 'integrated' build runs on a worker elsewhere."""
    return left_behind(
        db,
        number,
        1,
        None,
        heartbeat=time.time(),
        pipeline="gate",
        project=project,
        job="integrated",
        position=position,
        tested_with=tested_with,
    )


def finish(db: Database, build: str, result: str) -> None:
    with db.session() as session:
        record = session.get(BuildRecord, build)
        assert record is not None
        record.result, record.end_time = result, time.time()


@pytest.mark.parametrize("ahead_left", [False, True], ids=["merged-ahead", "failed-ahead"])
def test_gate_items_keep_builds_tested_on_what_still_holds(
    gate_box: Sandbox, tmp_path: Path, ahead_left: bool
) -> None:
    """B and C were tested on A; A merged before the restart. Nothing to redo.
    Unless C was tested on a change that left without merging: C runs again."""
    box = gate_box
    (box.root / "state").mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{box.root / 'state' / 'gatekeeper.db'}")
    db.migrate()
    try:
        numbers = []
        for name, project in (("A", "openstack/nova"), ("B", "openstack/glance")):
            number, _ = box.push_change(project, f"Change {name}", {f"{name}.txt": "x\n"})
            box.approve(number, 1)
            numbers.append(number)
        c, _ = box.push_change("openstack/nova", "Change C", {"C.txt": "x\n"})
        box.approve(c, 1)
        a, b = numbers
        box.review("gatekeeper", a, 1, "--label", "Verified=2", "--submit")
        key = {n: f"{p} {n},1" for n, p in ((a, "openstack/nova"), (b, "openstack/glance"))}
        gone = "openstack/keystone 999,1"  # failed and left: not merged, not queued
        _, b_build = gate_row(db, b, "openstack/glance", 1, [key[a]])
        c_item, c_build = gate_row(
            db, c, "openstack/nova", 2, [key[a], key[b], *([gone] if ahead_left else [])]
        )

        box.start_daemon()
        assert box.app is not None and box.app.scheduler is not None
        scheduler = box.app.scheduler
        box.wait_for(lambda: scheduler.restored is not None, 30, "the restore")
        assert scheduler.restored is not None and scheduler.restored.attached == 2
        finish(db, b_build, "SUCCESS")
        if not ahead_left:
            finish(db, c_build, "SUCCESS")
        box.wait_for(lambda: scheduler.is_settled(), 90, "the gate to empty")

        assert box.sim is not None
        merged = [
            int(e["change"]["number"]) for e in box.sim.events() if e["type"] == "change-merged"
        ]
        assert merged == [a, b, c]
        results = [r.result for r in builds_of(db, c_item)]
        if ahead_left:
            # Reset at once on restore, run again on top of B, passed.
            assert results == ["CANCELED", "SUCCESS"]
        else:
            assert results == ["SUCCESS"]
    finally:
        db.dispose()
