"""`kill -9` of the all-in-one daemon with a full gate: nothing is lost or done twice.

The daemon runs as its own process (``gatekeeper run``) against the Gerrit
simulator; the test kills it while ten approved changes are queued with
builds running, starts it again, and checks the queue came back in order,
every change merged once in that order with one report, and no node was
left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord, Node, QueueItemRecord
from gatekeeper.model.node import NodeState
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.gearmand import TlsGearman, free_port
from tests.functional.test_gate import UNCONFINED_YAML, gate_layout

pytestmark = pytest.mark.timeout(300)

SITE = """gearman:
  listen:
    port: {port}
worker:
  count: 10
  node-wait: 120
pool:
  interval: 0.5
providers:
  - name: local
    driver: local
{unconfined}    max-servers: 10
labels:
  - name: devstack-vm
    min-ready: 2
    providers: [local]
"""


class Daemon:
    """One ``gatekeeper <command>`` process, its output collected line by line."""

    def __init__(self, site_dir: Path, command: str = "run") -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", command],
            cwd=site_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=False,
        )
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")))
        self._reader.start()

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode

    def tail(self) -> str:
        return "".join(self.lines[-60:])


@pytest.fixture
def flags(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "flags"
    path.mkdir()
    yield path
    (path / "release").touch()  # orphaned builds of the killed daemon end too


@pytest.fixture
def box(tmp_path: Path, flags: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(gate_layout(flags))
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    sandbox.start_gerrit()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def queue_rows(db: Database) -> list[tuple[int, int]]:
    with db.session() as session:
        rows = session.scalars(
            select(QueueItemRecord)
            .where(QueueItemRecord.pipeline == "gate")
            .order_by(QueueItemRecord.position)
        )
        return [(r.change, r.patchset) for r in rows]


def running_builds(db: Database, seen: bool = False) -> int:
    """Builds started and not ended; with ``seen``, only those whose start the
    scheduler believed (it recorded the worker's certificate): a restarted
    scheduler re-attaches to those alone."""
    with db.session() as session:
        query = select(BuildRecord).where(
            BuildRecord.start_time.is_not(None), BuildRecord.result.is_(None)
        )
        if seen:
            query = query.where(BuildRecord.worker_identity != "")
        return len(list(session.scalars(query)))


def status_order(site_dir: Path) -> list[str]:
    shown = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "status", "--json"],
        cwd=site_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    [gate] = [p for p in json.loads(shown.stdout)["pipelines"] if p["name"] == "gate"]
    return [item["change"] for queue in gate["queues"] for item in queue["items"]]


def test_kill_9_with_ten_items_in_the_gate(box: Sandbox, flags: Path) -> None:
    site_dir = box.root
    box.site_file(
        site_dir / "gatekeeper.yaml", SITE.format(port=free_port(), unconfined=UNCONFINED_YAML)
    )
    db = Database(f"sqlite:///{box.root / 'state' / 'gatekeeper.db'}")
    sim = box.sim
    assert sim is not None

    daemon = Daemon(site_dir)
    try:
        box.wait_for(lambda: daemon.saw("stream-events: connected"), 60, "the listener")
        changes = []
        for n in range(10):
            project = "openstack/nova" if n % 2 == 0 else "openstack/glance"
            number, patchset = box.push_change(project, f"Change {n}", {f"f{n}.txt": f"{n}\n"})
            box.approve(number, patchset)
            changes.append((number, patchset))
        box.wait_for(lambda: queue_rows(db) == changes, 60, "ten changes in the gate")
        box.wait_for(lambda: running_builds(db) >= 5, 90, "builds running")
        before = status_order(site_dir)
        assert before == [f"{n},{p}" for n, p in changes]
        daemon.kill()
    except BaseException:
        print(daemon.tail())
        daemon.stop()
        raise

    assert queue_rows(db) == changes  # what the next run starts from
    daemon = Daemon(site_dir)
    try:
        box.wait_for(lambda: daemon.saw("restored 10 queued items"), 60, "the restore")
        assert status_order(site_dir) == before
        (flags / "release").touch()
        box.wait_for(
            lambda: all(sim.get_change(n).status == "MERGED" for n, _ in changes),
            180,
            "every change to merge",
        )
        box.wait_for(lambda: queue_rows(db) == [], 30, "the queue to empty")
        # Each change got one report: one success message and one submit.
        for number, _ in changes:
            mine = [m.text for m in sim.get_change(number).messages if m.author == "gatekeeper"]
            assert len([m for m in mine if "(gate pipeline)" in m]) == 1, mine
        # Merged once each, in queue order.
        merged = [int(e["change"]["number"]) for e in sim.events() if e["type"] == "change-merged"]
        assert merged == [n for n, _ in changes]

        def nodes_settled() -> bool:
            with db.session() as session:
                states = [n.state for n in session.scalars(select(Node))]
            return NodeState.USED not in states and NodeState.DELETE not in states

        box.wait_for(nodes_settled, 60, "used nodes to be deleted")
        with db.session() as session:
            rows = {n.name for n in session.scalars(select(Node))}
            lost = session.scalars(
                select(BuildRecord).where(BuildRecord.result == "CANCELED")
            ).all()
        # No leak: every node directory on disk has its row, and no row is stuck.
        node_root = box.root / "state" / "nodes"
        on_disk = (
            {p.name for p in node_root.iterdir() if p.is_dir()} if node_root.exists() else set()
        )
        assert on_disk <= rows | {"images"}, on_disk - rows
        assert lost, "the builds running at the kill should be recorded as lost"
    finally:
        status = daemon.stop()
        if status != 0:
            print(daemon.tail())
        db.dispose()
    assert status == 0


SPLIT_SITE = """gearman:
  embedded: false
  servers:
    - host: {host}
      port: {port}
{tls}
worker:
  count: 4
pool:
  interval: 0.5
providers:
  - name: local
    driver: local
{unconfined}    max-servers: 4
labels:
  - name: devstack-vm
    min-ready: 2
    providers: [local]
"""


@pytest.mark.geard
def test_kill_9_of_the_scheduler_while_workers_elsewhere_build(
    box: Sandbox, flags: Path, request: pytest.FixtureRequest
) -> None:
    """Scheduler, workers and pool as three processes on an external server,
    gear's geard over TLS. The scheduler dies mid-build; the builds go on;
    the restarted scheduler re-attaches to them and reports each change once,
    without re-running. (Not on Debian's gearmand: it cannot do TLS, and a
    scheduler re-attaches only to builds whose worker's certificate it saw.)"""
    site_dir = box.root
    geard: TlsGearman = request.getfixturevalue("geard")
    (host, port), tls = geard.address, f"  tls-dir: {geard.tls_dir}"
    box.site_file(
        site_dir / "gatekeeper.yaml",
        SPLIT_SITE.format(host=host, port=port, tls=tls, unconfined=UNCONFINED_YAML),
    )
    db = Database(f"sqlite:///{box.root / 'state' / 'gatekeeper.db'}")
    sim = box.sim
    assert sim is not None
    scheduler = Daemon(site_dir, "scheduler")
    others: list[Daemon] = []
    try:
        box.wait_for(lambda: scheduler.saw("stream-events: connected"), 60, "the listener")
        others = [Daemon(site_dir, "worker"), Daemon(site_dir, "pool")]
        changes = []
        for name, project in (("A", "openstack/nova"), ("B", "openstack/glance")):
            number, patchset = box.push_change(project, f"Change {name}", {f"{name}.txt": "x\n"})
            box.approve(number, patchset)
            changes.append((number, patchset))
        box.wait_for(lambda: running_builds(db, seen=True) == 2, 120, "both builds running")
        scheduler.kill()
        scheduler = Daemon(site_dir, "scheduler")
        box.wait_for(lambda: scheduler.saw("restored 2 queued items"), 60, "the restore")
        assert scheduler.saw("2 builds re-attached")
        (flags / "release").touch()
        box.wait_for(
            lambda: all(sim.get_change(n).status == "MERGED" for n, _ in changes),
            120,
            "both changes to merge",
        )
        merged = [int(e["change"]["number"]) for e in sim.events() if e["type"] == "change-merged"]
        assert merged == [n for n, _ in changes]
        for number, _ in changes:
            mine = [m.text for m in sim.get_change(number).messages if m.author == "gatekeeper"]
            assert len([m for m in mine if "(gate pipeline)" in m]) == 1, mine
            with db.session() as session:
                results = [
                    r.result
                    for r in session.scalars(
                        select(BuildRecord).where(BuildRecord.change == number)
                    )
                ]
            assert results == ["SUCCESS"]  # the one build, not run again
    except BaseException:
        for daemon in (scheduler, *others):
            print(daemon.tail())
        raise
    finally:
        for daemon in (scheduler, *others):
            daemon.stop()
        db.dispose()
