"""Gearman over TLS beside plain TCP: build submissions per second and a no-op build's round trip.

The embedded gear.Server, gatekeeper's BuildDispatcher (the scheduler's
side, as in production) and no-op gear workers that answer each build at
once with WORK_DATA and WORK_COMPLETE, the way a worker does. Both
transports in the same run, on the same machine, alternating; TLS with the
site CA's ECDSA P-256 certificates and client certificates required, as
gatekeeper runs by default. Connections are made before timing starts (a
connection's handshake is paid once, not per build).

- submissions/s: ``--burst`` SUBMIT_JOBs back to back from a bare
  gear.Client, each waiting for the server's JOB_CREATED (the transport's
  cost alone); and builds completed per second when ``--burst`` builds go
  through the BuildDispatcher at once (its submit returns before Gearman
  has them: it may hold a build until it knows a worker is registered);
- round trip: ``--count`` no-op builds one at a time, submit -> worker
  WORK_COMPLETE -> back at the submitter, both from a bare gear.Client and
  through the BuildDispatcher (to BuildCompleted in the scheduler's sink).

    .venv/bin/python bench/gearman_tls.py [--count 300] [--burst 1000] [--rounds 2]

Target: TLS adds no more than a few milliseconds per build.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import gear
from rich.console import Console
from rich.table import Table

from gatekeeper.dispatch import wire
from gatekeeper.dispatch.certs import Role, TlsFiles, ensure_local
from gatekeeper.dispatch.client import BuildDispatcher
from gatekeeper.dispatch.protocol import JobSpec, encode
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.model.results import BuildCompleted, CompleteData, ResultEvent, StartData

# gear's TLS contexts use deprecated ssl names (see pyproject's filterwarnings).
warnings.filterwarnings("ignore", category=DeprecationWarning)

JOB = "noop"
SPEC = JobSpec(name=JOB, run="true", node="devstack-vm", logs=[], timeout=60)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class NoopWorkers:
    """``slots`` gear connections taking ``build:noop``, each answering at once."""

    def __init__(self, port: int, tls: TlsFiles | None, slots: int) -> None:
        self.workers: list[gear.TextWorker] = []
        self.threads: list[threading.Thread] = []
        for slot in range(slots):
            worker = wire.TextWorker(f"noop-{slot}")
            worker.addServer("127.0.0.1", port, **gear_kwargs(tls))
            worker.registerFunction(f"build:{JOB}")
            worker.waitForServer(30)
            self.workers.append(worker)
            thread = threading.Thread(target=self._run, args=(worker,), daemon=True)
            thread.start()
            self.threads.append(thread)

    @staticmethod
    def _run(worker: gear.TextWorker) -> None:
        while True:
            try:
                job = worker.getJob()
            except gear.InterruptedError:
                return
            uuid = json.loads(job.arguments)["ZUUL_UUID"]
            now = time.time()
            job.sendWorkData(encode(StartData(uuid, "noop", "n", "local", "", now)))
            job.sendWorkComplete(encode(CompleteData(uuid, "SUCCESS", worker="noop")))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stopWaitingForJobs()
            worker.shutdown()


@dataclass
class Sink:
    """The scheduler's side: when each build's BuildCompleted arrived."""

    done: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def __call__(self, event: ResultEvent) -> None:
        if isinstance(event, BuildCompleted):
            with self.lock:
                self.done[event.uuid] = time.perf_counter()
                self.changed.notify_all()

    def wait(self, uuids: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not all(u in self.done for u in uuids):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out: {len(self.done)} of {len(uuids)} completed")
                self.changed.wait(left)


@dataclass
class Result:
    submits_per_s: float
    completed_per_s: float
    round_trips: list[float]
    bare_round_trips: list[float]


class _BareClient(wire.Client):
    """A gear.Client (with gatekeeper's TCP_NODELAY) that tells when a job's
    WORK_COMPLETE arrived (gear's poll thread)."""

    def __init__(self) -> None:
        super().__init__(client_id="bench-bare")
        self.completed = threading.Event()

    def handleWorkComplete(self, packet: gear.Packet) -> gear.Job:  # noqa: N802 - gear's name
        job = super().handleWorkComplete(packet)
        self.completed.set()
        return job


def bare(port: int, tls: TlsFiles | None, count: int, burst: int) -> tuple[float, list[float]]:
    """SUBMIT_JOBs answered per second, and no-op round trips, from a bare gear.Client."""
    client = _BareClient()
    client.addServer("127.0.0.1", port, **gear_kwargs(tls))
    client.waitForServer(30)
    sequence = iter(range(10**9))

    def job() -> gear.TextJob:
        uuid = f"bare{next(sequence):028x}"
        return gear.TextJob(f"build:{JOB}", json.dumps({"ZUUL_UUID": uuid}))

    try:
        round_trips = []
        for _ in range(count):
            client.completed.clear()
            start = time.perf_counter()
            client.submitJob(job(), timeout=30)
            if not client.completed.wait(30):
                raise SystemExit("a bare no-op build did not complete")
            round_trips.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(burst):
            client.submitJob(job(), timeout=30)
        rate = burst / (time.perf_counter() - start)
    finally:
        client.shutdown()
    return rate, round_trips


def measure(tls_dir: Path | None, count: int, burst: int, slots: int) -> Result:
    files = ensure_local(tls_dir, "bench") if tls_dir is not None else None
    server = EmbeddedGearman("127.0.0.1", 0, tls=files[Role.SERVER] if files else None)
    workers = NoopWorkers(server.port, files[Role.WORKER] if files else None, slots)
    sink = Sink()
    dispatcher = BuildDispatcher(
        [("127.0.0.1", server.port)],
        sink,
        startup_grace=0.0,
        tls=files[Role.SCHEDULER] if files else None,
    )
    sequence = iter(range(10**9))

    def submit() -> str:
        uuid = f"{next(sequence):032x}"
        dispatcher.submit(uuid, {"ZUUL_UUID": uuid}, SPEC)
        return uuid

    try:
        submits_per_s, bare_round_trips = bare(
            server.port, files[Role.SCHEDULER] if files else None, count, burst
        )
        dispatcher.wait_for_server(30)
        sink.wait([submit() for _ in range(20)])  # warm up: registry known, paths hot
        round_trips = []
        for _ in range(count):
            start = time.perf_counter()
            uuid = submit()
            sink.wait([uuid])
            round_trips.append(sink.done[uuid] - start)
        start = time.perf_counter()
        uuids = [submit() for _ in range(burst)]
        sink.wait(uuids)
        finished = max(sink.done[u] for u in uuids)
    finally:
        dispatcher.shutdown()
        workers.stop()
        server.stop()
    return Result(submits_per_s, burst / (finished - start), round_trips, bare_round_trips)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="round trips, one at a time")
    parser.add_argument("--burst", type=int, default=1000, help="builds submitted back to back")
    parser.add_argument("--slots", type=int, default=4, help="no-op worker connections")
    parser.add_argument("--rounds", type=int, default=2, help="alternations; the best is kept")
    args = parser.parse_args()
    out = Console(highlight=False, width=110)
    results: dict[str, list[Result]] = {"plain TCP": [], "TLS": []}
    with tempfile.TemporaryDirectory(prefix="gk-bench-tls-") as tmp:
        for round_ in range(args.rounds):
            for name in results:
                out.print(f"round {round_ + 1}: {name} ...")
                tls_dir = Path(tmp) / "tls" if name == "TLS" else None
                results[name].append(measure(tls_dir, args.count, args.burst, args.slots))

    def best(name: str) -> Result:
        # On a shared machine, the least disturbed run of each.
        runs = results[name]
        return Result(
            max(r.submits_per_s for r in runs),
            max(r.completed_per_s for r in runs),
            min((r.round_trips for r in runs), key=lambda rt: percentile(rt, 50)),
            min((r.bare_round_trips for r in runs), key=lambda rt: percentile(rt, 50)),
        )

    plain, tls = best("plain TCP"), best("TLS")
    table = Table(
        title=(
            f"Gearman, embedded gear.Server: TLS beside plain TCP "
            f"({args.count} round trips, bursts of {args.burst}, {args.slots} worker slots, "
            f"best of {args.rounds})"
        )
    )
    for column in ("measure", "plain TCP", "TLS", "TLS / plain", "TLS - plain"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for label, a, b in (
        ("SUBMIT_JOB answered/s, gear.Client", plain.submits_per_s, tls.submits_per_s),
        ("builds completed/s, dispatcher burst", plain.completed_per_s, tls.completed_per_s),
    ):
        table.add_row(label, f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x", f"{b - a:+.0f}/s")
    for who, x, y in (
        ("gear.Client", plain.bare_round_trips, tls.bare_round_trips),
        ("dispatcher", plain.round_trips, tls.round_trips),
    ):
        for label, pct in ((f"round trip p50 ms, {who}", 50), (f"round trip p99 ms, {who}", 99)):
            a, b = percentile(x, pct) * 1000, percentile(y, pct) * 1000
            table.add_row(label, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x", f"{b - a:+.2f} ms")
        a, b = statistics.mean(x) * 1000, statistics.mean(y) * 1000
        table.add_row(
            f"round trip mean ms, {who}",
            f"{a:.2f}",
            f"{b:.2f}",
            f"{b / a:.2f}x",
            f"{b - a:+.2f} ms",
        )
    out.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
