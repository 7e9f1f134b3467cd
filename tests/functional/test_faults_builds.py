"""Faults on the build side, injected into real parts.

Real parts only: gear's embedded server and gear's geard over TLS with
client certificates, and Debian's gearmand in plain TCP (it cannot do TLS),
each restarted mid-build; worker processes (killed with SIGKILL mid-build, stopped with
SIGTERM), a private PostgreSQL cluster (restarted with pg_ctl), SQLite, the
local provider and its transport (bash, rsync).

The scheduler's part is played by :class:`Ledger`: it receives what the
real :class:`BuildDispatcher` sends the scheduler and records it in the
builds table as the scheduler's ``_handle_result`` does. "Acted on" is a
build that got exactly one completion, with the expected result. Every
test prints a ``TALLY`` line (``pytest -s``): fault, times injected, builds
expected, acted on, lost, duplicated.

This module is also the worker process the tests start and kill:
``python -m tests.functional.test_faults_builds '<json>'``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.certs import Role, TlsFiles, ensure_local, issue
from gatekeeper.dispatch.client import BuildDispatcher
from gatekeeper.dispatch.protocol import JobSpec
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.model.node import NodeState
from gatekeeper.model.results import BuildCompleted, BuildStarted, ResultEvent
from gatekeeper.pool.providers.local import LocalProvider
from gatekeeper.worker.executor import BuildExecutor
from gatekeeper.worker.server import Worker
from gatekeeper.worker.workspace import WorkspaceBuilder
from tests.fixtures.gearmand import GEARD, GEARMAND, _wait_for_port, free_port, start_geard

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
JOB = "fault-job"
LABEL = "fault-label"
WAIT = 60.0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        pause.wait(0.05)


# -- Gearman servers that can be restarted on their port -----------------------


class GearmanServer:
    """gear's embedded server, gear's geard or Debian's gearmand on a fixed port.

    The embedded server and geard speak TLS with the certificates of
    ``tls_dir``; gearmand cannot (it ignores ``--ssl``), so it is plain TCP.
    """

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.tmp = tmp
        self.tls_dir: Path | None = None if kind == "gearmand" else tmp / "tls"
        self._embedded: EmbeddedGearman | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        if self.kind == "embedded":
            assert self.tls_dir is not None
            tls = ensure_local(self.tls_dir, "faults")[Role.SERVER]
            self._embedded = EmbeddedGearman("127.0.0.1", self.port, tls=tls)
            return
        if self.kind == "geard":
            assert self.tls_dir is not None
            self._proc = start_geard(self.tls_dir, self.tmp, self.port)
            _wait_for_port(self.port, self._proc)
            return
        self._proc = subprocess.Popen(
            [
                GEARMAND,
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--log-file={self.tmp / 'gearmand.log'}",
                "--verbose=WARNING",
                "--threads=2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self._proc)

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _gearman_kinds() -> list[Any]:
    return [
        pytest.param("embedded", id="embedded"),
        pytest.param("gearmand", id="gearmand", marks=pytest.mark.gearmand),
        pytest.param("geard", id="geard", marks=pytest.mark.geard),
    ]


def _gearman(kind: str, tmp: Path) -> Iterator[GearmanServer]:
    if kind == "gearmand" and not Path(GEARMAND).exists():
        pytest.skip("needs Debian's gearmand (apt-get install gearman-job-server)")
    if kind == "geard" and not Path(GEARD).exists():
        pytest.skip("needs gear's geard")
    server = GearmanServer(kind, tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the scheduler's stand-in ----------------------------------------------------


@dataclass
class Ledger:
    """What the scheduler would see; records it as the scheduler does."""

    builds: BuildStore
    events: list[ResultEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: ResultEvent) -> None:
        if isinstance(event, BuildStarted):
            d = event.data
            self.builds.started(event.uuid, d.node, d.provider, d.worker, d.started_at, d.url)
        else:
            c = event.data
            end = c.ended_at or time.time()
            self.builds.completed(event.uuid, c.result, end, c.url, c.node, c.provider)
        with self.lock:
            self.events.append(event)

    def starts(self, uuid: str) -> list[int]:
        with self.lock:
            return [
                e.data.attempt
                for e in self.events
                if isinstance(e, BuildStarted) and e.uuid == uuid
            ]

    def results(self, uuid: str) -> list[str]:
        with self.lock:
            return [
                e.data.result
                for e in self.events
                if isinstance(e, BuildCompleted) and e.uuid == uuid
            ]

    def tally(
        self, fault: str, injected: int, expected: dict[str, str], settle: float = 0.5
    ) -> None:
        """Wait for every build to complete, then count; assert none lost or doubled."""
        wait_for(lambda: all(self.results(u) for u in expected), "every build to complete")
        # A duplicate would come after the first result: give it a moment.
        threading.Event().wait(settle)
        acted = lost = duplicated = 0
        for uuid, result in expected.items():
            results = self.results(uuid)
            lost += not results
            duplicated += max(0, len(results) - 1)
            acted += results == [result]
        print(
            f"\nTALLY | {fault} | injected {injected} | expected {len(expected)}"
            f" | acted on {acted} | lost {lost} | duplicated {duplicated}"
        )
        assert (lost, duplicated) == (0, 0)
        assert {u: self.results(u) for u in expected} == {u: [r] for u, r in expected.items()}


# -- a site: database, nodes, logs, dispatcher -----------------------------------


@dataclass
class Site:
    tmp: Path
    db_url: str
    db: Database
    servers: list[tuple[str, int]]
    ledger: Ledger
    dispatcher: BuildDispatcher
    nodes: NodeStore
    provider: LocalProvider
    #: The site's certificates (None: plain TCP, for gearmand).
    tls_dir: Path | None = None
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    @property
    def builds(self) -> BuildStore:
        return self.ledger.builds

    def release(self) -> None:
        """Let every job waiting in :func:`wait_release` go on."""
        for node in (self.tmp / "nodes").iterdir():
            (node / "release").touch()

    def add_nodes(self, count: int) -> None:
        for _ in range(count):
            name = f"node-{uuidlib.uuid4().hex[:8]}"
            self.nodes.add(name, LABEL, "local")
            self.nodes.set_ready(name, self.provider.launch(name, LABEL))

    def submit(self, command: str, attempts: int = 3, timeout: float = 60, job: str = JOB) -> str:
        uuid = uuidlib.uuid4().hex
        params = {
            "ZUUL_UUID": uuid,
            "ZUUL_PIPELINE": "check",
            "LOG_PATH": f"faults/{job}/{uuid[:7]}",
        }
        spec = JobSpec(name=job, run=command, node=LABEL, logs=["logs/**"], timeout=timeout)
        self.builds.dispatched(uuid, job, "org/project", 1, 1, "check", time.time())
        self.dispatcher.submit(uuid, params, spec, attempts=attempts)
        return uuid

    def log_dir(self, uuid: str, job: str = JOB) -> Path:
        return self.tmp / "logs" / f"faults/{job}/{uuid[:7]}"

    def worker_config(self, name: str, **extra: Any) -> dict[str, Any]:
        tls = None
        if self.tls_dir is not None:
            # Each worker its own certificate: the server lets worker:N
            # register only stop:N.
            files = issue(self.tls_dir, Role.WORKER, name, out=self.tls_dir / "workers" / name)
            tls = [str(files.ca), str(files.cert), str(files.key)]
        return {
            "name": name,
            "tls": tls,
            "db": self.db_url,
            "servers": self.servers,
            "nodes": str(self.tmp / "nodes"),
            "logs": str(self.tmp / "logs"),
            "state": str(self.tmp / "state"),
            **extra,
        }

    def spawn_worker(self, name: str, **extra: Any) -> subprocess.Popen[str]:
        """A worker process, ready (connected and registered) when this returns."""
        with open(self.tmp / f"{name}.log", "w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.functional.test_faults_builds"],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        self.procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(self.worker_config(name, **extra)) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.strip() == "ready", (self.tmp / f"{name}.log").read_text()
        return proc

    def start_worker(self, name: str, slots: int = 3, job_timeout: float = 3600) -> Worker:
        """A worker in this process."""
        worker = make_worker(self.worker_config(name, slots=slots, job_timeout=job_timeout))
        self.workers.append(worker)
        worker.start()
        worker.wait_for_server(20)
        return worker

    def close(self) -> None:
        self.dispatcher.shutdown()
        for worker in self.workers:
            worker.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        self.db.dispose()


def make_worker(config: dict[str, Any]) -> Worker:
    db = Database(config["db"])
    provider = LocalProvider(
        ProviderConfig(name="local", driver="local", root=Path(config["nodes"]))
    )
    state = Path(config["state"])
    executor = BuildExecutor(
        nodes=NodeStore(db),
        providers={"local": provider},
        workspace=WorkspaceBuilder(state / "git", {}),
        git_url="",
        log_root=Path(config["logs"]),
        log_url_base="http://logs.example.org/",
        state_dir=state,
        node_wait=30.0,
        hold_seconds=3600.0,
        console=lambda line: None,
        job_timeout=float(config.get("job_timeout", 3600)),
    )
    return Worker(
        config["name"],
        [(h, int(p)) for h, p in config["servers"]],
        [JOB],
        executor,
        int(config.get("slots", 3)),
        builds=BuildStore(db),
        heartbeat=0.3,
        tls=TlsFiles(*map(Path, config["tls"])) if config.get("tls") else None,
    )


def worker_main() -> None:
    """A worker process: config on stdin, "ready" on stdout, SIGTERM stops it."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = json.loads(sys.stdin.readline())
    worker = make_worker(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    worker.start()
    worker.wait_for_server(20)
    print("ready", flush=True)
    while not stop.wait(0.2):
        pass
    worker.stop(float(config.get("grace", 0)))


def _site(
    tmp: Path,
    db_url: str,
    servers: list[tuple[str, int]],
    grace: float,
    tls_dir: Path | None = None,
) -> Site:
    db = Database(db_url)
    db.migrate()
    ledger = Ledger(BuildStore(db))
    # No start-up grace: the tests' workers are up before their builds.
    dispatcher = BuildDispatcher(
        servers,
        ledger,
        builds=BuildStore(db),
        registration_grace=grace,
        resubmit_wait=WAIT,
        startup_grace=0.0,
        tls=TlsFiles.for_role(tls_dir, Role.SCHEDULER) if tls_dir is not None else None,
    )
    dispatcher.wait_for_server(20)
    provider = LocalProvider(ProviderConfig(name="local", driver="local", root=tmp / "nodes"))
    return Site(tmp, db_url, db, servers, ledger, dispatcher, NodeStore(db), provider, tls_dir)


@pytest.fixture(params=_gearman_kinds())
def gearman(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GearmanServer]:
    yield from _gearman(request.param, tmp_path)


@pytest.fixture
def site(gearman: GearmanServer, tmp_path: Path) -> Iterator[Site]:
    s = _site(
        tmp_path,
        f"sqlite:///{tmp_path / 'gatekeeper.db'}",
        [gearman.address],
        grace=3.0,
        tls_dir=gearman.tls_dir,
    )
    try:
        yield s
    finally:
        s.close()


def wait_release() -> str:
    # A confined job sees nothing outside its node: the flag is put in every
    # node's directory (the job's $HOME) by Site.release.
    return 'echo waiting; while [ ! -e "$HOME/release" ]; do sleep 0.05; done; echo released'


# -- the tests --------------------------------------------------------------------


def test_worker_killed_mid_build_is_run_again(site: Site, gearman: GearmanServer) -> None:
    site.add_nodes(6)
    first = site.spawn_worker("w-first")
    uuids = [site.submit(wait_release()) for _ in range(3)]
    wait_for(lambda: all(site.ledger.starts(u) == [1] for u in uuids), "three builds to start")
    site.spawn_worker("w-second")
    first.kill()  # SIGKILL: no goodbye to Gearman, nodes left claimed
    first.wait()
    site.release()
    site.ledger.tally(
        f"worker SIGKILL mid-build ({gearman.kind})", 1, dict.fromkeys(uuids, "SUCCESS")
    )
    for uuid in uuids:
        assert site.ledger.starts(uuid) == [1, 2]
        record = site.builds.get(uuid)
        assert record is not None
        assert (record.attempt, record.result, record.worker) == (2, "SUCCESS", "w-second")
        assert "released" in (site.log_dir(uuid) / "console.txt").read_text()


def test_deferred_builds_reach_gearman_when_the_block_ends(
    site: Site, gearman: GearmanServer
) -> None:
    # The gate records a walk's builds in one transaction and hands them to
    # Gearman only after it commits: inside the block none is in Gearman,
    # and one cancelled there is never sent.
    site.add_nodes(2)
    site.start_worker("w-deferred")
    with site.dispatcher.deferred():
        kept = site.submit("echo kept")
        dropped = site.submit("echo dropped")
        assert sorted(site.dispatcher.waiting) == sorted([kept, dropped])
        assert site.dispatcher.cancel(dropped) is False
        assert site.dispatcher.waiting == [kept]
    site.ledger.tally(f"deferred submit ({gearman.kind})", 0, {kept: "SUCCESS"})
    assert site.ledger.starts(dropped) == [] and site.ledger.results(dropped) == []
    assert site.dispatcher.waiting == []


def test_worker_dying_on_every_attempt_is_retry_limit(site: Site, gearman: GearmanServer) -> None:
    site.add_nodes(5)
    current = site.spawn_worker("w-0")
    uuid = site.submit("echo working; sleep 100000", attempts=3)
    kills = 0
    # Each worker that takes the build is killed (after its successor is up):
    # gearmand hands the job to the next worker by itself, gear's server
    # fails it back to the dispatcher, which submits it again.
    while True:
        wait_for(
            lambda tried=kills: (
                len(site.ledger.starts(uuid)) > tried  # type: ignore[misc]
                or bool(site.ledger.results(uuid))
            ),
            "the build to start again or end",
        )
        if site.ledger.results(uuid):
            break
        successor = site.spawn_worker(f"w-{kills + 1}")
        current.kill()
        current.wait()
        kills += 1
        current = successor
        assert kills <= 3, "the build went on past its attempts"
    site.ledger.tally(f"worker dies every attempt ({gearman.kind})", kills, {uuid: "RETRY_LIMIT"})
    assert kills == 3
    assert site.ledger.starts(uuid) == [1, 2, 3]
    record = site.builds.get(uuid)
    assert record is not None and (record.attempt, record.result) == (3, "RETRY_LIMIT")


def test_gearman_restart_mid_build(site: Site, gearman: GearmanServer) -> None:
    site.add_nodes(6)
    worker = site.start_worker("w-restart")
    uuids = [site.submit(wait_release()) for _ in range(2)]
    wait_for(lambda: all(site.ledger.starts(u) == [1] for u in uuids), "two builds to start")
    gearman.restart()
    # Workers and the dispatcher reconnect by themselves; the runs that lost
    # their server were aborted and the builds submitted again.
    wait_for(lambda: all(site.ledger.starts(u) == [1, 2] for u in uuids), "second attempts")
    site.release()
    site.ledger.tally(
        f"gearman restart mid-build ({gearman.kind})", 1, dict.fromkeys(uuids, "SUCCESS")
    )
    assert worker.running_builds == []
    for uuid in uuids:
        record = site.builds.get(uuid)
        assert record is not None and (record.attempt, record.result) == (2, "SUCCESS")
    # The aborted runs hold nothing: their nodes are deleted like the passed
    # ones (a run can be aborted twice when the reconnect races the server
    # handing the job out again); none went back to READY, none is stuck in use.
    states = sorted(n.state for n in site.nodes.list())
    assert NodeState.HOLD not in states and states.count(NodeState.DELETE) >= 4
    assert NodeState.USED not in states and NodeState.BUILDING not in states


@pytest.mark.parametrize(
    ("job_timeout", "site_timeout"), [(1.0, 3600.0), (0.0, 1.0)], ids=["job", "site-default"]
)
def test_job_that_never_ends_is_timed_out(
    site: Site, gearman: GearmanServer, job_timeout: float, site_timeout: float
) -> None:
    site.add_nodes(1)
    site.start_worker("w-timeout", job_timeout=site_timeout)
    # Named so it can be found from outside the job's pid namespace.
    marker = f"gatekeeper-fault-{uuidlib.uuid4().hex[:12]}"
    command = (
        f"mkdir -p logs; echo collected > logs/before.txt; (exec -a {marker} sleep 100000) &"
        " kill -0 $! && echo child-running; echo sleeping; wait"
    )
    uuid = site.submit(command, timeout=job_timeout)
    site.ledger.tally(f"job never ends ({gearman.kind})", 1, {uuid: "TIMED_OUT"})
    console = (site.log_dir(uuid) / "console.txt").read_text()
    assert "sleeping\n" in console and "TIMED OUT after 1s" in console
    assert (site.log_dir(uuid) / "logs" / "before.txt").read_text() == "collected\n"
    assert "child-running\n" in console
    wait_for(lambda: not _running(marker), "the command's child to be killed", 15)
    [node] = site.nodes.list()
    assert node.state == NodeState.HOLD
    record = site.builds.get(uuid)
    assert record is not None and record.result == "TIMED_OUT" and record.heartbeat is not None


def _running(marker: str) -> bool:
    """Whether a live (not zombie) process on this host has ``marker`` as its name."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or marker.encode() not in (proc / "cmdline").read_bytes():
                continue
            if (proc / "stat").read_text().split(")")[-1].split()[0] != "Z":
                return True
        except OSError:
            continue
    return False


def test_job_without_worker_is_not_registered(site: Site, gearman: GearmanServer) -> None:
    site.add_nodes(1)
    site.start_worker("w-reg")
    nobody = site.submit("true", job="nobody-runs-this")
    fine = site.submit("echo fine")
    site.ledger.tally(
        f"no worker registered ({gearman.kind})",
        1,
        {nobody: "NOT_REGISTERED", fine: "SUCCESS"},
    )
    assert site.ledger.starts(nobody) == []


def test_worker_registering_late_is_waited_for(site: Site, gearman: GearmanServer) -> None:
    site.add_nodes(1)
    uuid = site.submit("echo late")  # no worker yet: the build waits, briefly
    site.start_worker("w-late")
    site.ledger.tally(f"worker registers after submit ({gearman.kind})", 1, {uuid: "SUCCESS"})


def test_sigterm_lets_a_build_finish_and_hands_on_the_rest(
    site: Site, gearman: GearmanServer
) -> None:
    site.add_nodes(4)
    proc = site.spawn_worker("w-term", grace=3.0)
    finishing = site.submit(f"{wait_release()}; echo finished")
    endless = site.submit("echo endless; sleep 100000")
    wait_for(lambda: all(site.ledger.starts(u) == [1] for u in (finishing, endless)), "starts")
    site.spawn_worker("w-after")
    proc.send_signal(signal.SIGTERM)
    site.release()
    # Within the grace period the first ends as usual; the endless one is
    # aborted when it is over, and the dispatcher gives it to w-after.
    assert proc.wait(30) == 0
    wait_for(lambda: site.ledger.starts(endless) == [1, 2], "the aborted build to run again")
    site.dispatcher.cancel(endless)
    site.ledger.tally(
        f"SIGTERM to a worker ({gearman.kind})", 1, {finishing: "SUCCESS", endless: "ABORTED"}
    )
    assert "finished" in (site.log_dir(finishing) / "console.txt").read_text()
    log_text = (site.tmp / "w-term.log").read_text()
    assert f"build {endless} aborted: the worker is stopping" in log_text
    record = site.builds.get(endless)
    assert record is not None and (record.attempt, record.worker) == (2, "w-after")
    record = site.builds.get(finishing)
    assert record is not None and (record.result, record.worker) == ("SUCCESS", "w-term")


def test_builds_go_to_the_gearman_server_that_is_up(tmp_path: Path) -> None:
    servers = [GearmanServer("embedded", tmp_path), GearmanServer("embedded", tmp_path)]
    for server in servers:
        server.start()
    site = _site(
        tmp_path,
        f"sqlite:///{tmp_path / 'gatekeeper.db'}",
        [s.address for s in servers],
        2.0,
        tls_dir=servers[0].tls_dir,
    )
    try:
        site.add_nodes(4)
        site.start_worker("w-two", slots=2)
        servers[0].stop()
        uuids = [site.submit("echo up") for _ in range(4)]
        site.ledger.tally("one of two gearman servers down", 1, dict.fromkeys(uuids, "SUCCESS"))
    finally:
        site.close()
        for server in servers:
            server.stop()


# -- PostgreSQL restarted -----------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, restartable."""

    bindir: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self._ctl(
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        self._ctl("-w", "-t", "30", "-m", "fast", "stop")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("needs PostgreSQL's server binaries (apt-get install postgresql)")
    bindir = bins[-1].parent
    data = Path(f"/tmp/gk-faults-pg-{uuidlib.uuid4().hex[:8]}")
    data.mkdir(mode=0o700)
    if os.getuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*_as_postgres(), str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg = PrivatePostgres(bindir, data, free_port())
    pg.start()
    try:
        yield pg
    finally:
        try:
            pg.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)


@pytest.mark.postgresql
def test_postgres_restarted_between_and_during_builds(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    tls_dir = tmp_path / "tls"
    server = EmbeddedGearman("127.0.0.1", 0, tls=ensure_local(tls_dir, "faults")[Role.SERVER])
    site = _site(
        tmp_path, private_postgres.url, [("127.0.0.1", server.port)], grace=3.0, tls_dir=tls_dir
    )
    try:
        site.add_nodes(4)
        site.start_worker("w-pg")
        first = site.submit("echo one")
        wait_for(lambda: bool(site.ledger.results(first)), "the first build")
        private_postgres.stop()
        private_postgres.start()  # between two operations
        running = site.submit(wait_release())
        wait_for(lambda: site.ledger.starts(running) == [1], "a build to start")
        private_postgres.stop()  # during one: heartbeats fail, then the result waits
        site.release()
        threading.Event().wait(1.0)
        private_postgres.start()
        last = site.submit("echo three")
        site.ledger.tally(
            "PostgreSQL restarted (2x)", 2, dict.fromkeys([first, running, last], "SUCCESS")
        )
        for uuid in (first, running, last):
            record = site.builds.get(uuid)
            assert record is not None and record.result == "SUCCESS" and record.worker == "w-pg"
            assert record.heartbeat is not None and record.end_time is not None
        # The node the build running through the outage used was given back
        # then too: none is left claimed by a build that has ended.
        assert [n.name for n in site.nodes.list(state=NodeState.USED)] == []
    finally:
        site.close()
        server.stop()


if __name__ == "__main__":
    worker_main()
