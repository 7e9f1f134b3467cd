"""Gearman round trips with gear's sockets as they come (Nagle on) beside
gatekeeper's (TCP_NODELAY, gatekeeper.dispatch.wire), in the same run.

Both over TLS with the site CA's certificates, as gatekeeper runs by
default: a server (gear's ``Server`` as it comes, or gatekeeper's
``EmbeddedGearman``), one no-op worker answering each job with WORK_DATA then
WORK_COMPLETE (as a gatekeeper worker does), and a client that submits
``--count`` jobs one at a time (round trip: submit to WORK_COMPLETE back at
the client) and then ``--burst`` back to back (SUBMIT_JOBs answered per
second). Connections are made before timing starts.

    .venv/bin/python bench/gear_nodelay.py [--count 200] [--burst 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import gear
from rich.console import Console
from rich.table import Table

from gatekeeper.dispatch import wire
from gatekeeper.dispatch.certs import Role, ensure_local
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.dispatch.tls import gear_kwargs

# gear's TLS contexts use deprecated ssl names (see pyproject's filterwarnings).
warnings.filterwarnings("ignore", category=DeprecationWarning)

FUNCTION = "build:noop"


def _answer(worker: gear.TextWorker) -> None:
    while True:
        try:
            job = worker.getJob()
        except gear.InterruptedError:
            return
        job.sendWorkData('{"started": true}')
        job.sendWorkComplete('{"result": "SUCCESS"}')


def measure(tls_dir: Path, nodelay: bool, count: int, burst: int) -> tuple[list[float], float]:
    """Round trips (s) and SUBMIT_JOBs answered per second."""
    files = ensure_local(tls_dir, "bench")
    server: gear.Server | EmbeddedGearman
    if nodelay:
        server = EmbeddedGearman("127.0.0.1", 0, tls=files[Role.SERVER])
        port = server.port
    else:
        server = gear.Server(0, host="127.0.0.1", **gear_kwargs(files[Role.SERVER]))
        port = server.port
    worker = (wire.TextWorker if nodelay else gear.TextWorker)("noop")
    client = (wire.Client if nodelay else gear.Client)("bench")
    done = threading.Event()
    original = client.handleWorkComplete

    def completed(packet: gear.Packet) -> gear.Job:
        job = original(packet)
        done.set()
        return job

    client.handleWorkComplete = completed  # type: ignore[method-assign]
    try:
        worker.addServer("127.0.0.1", port, **gear_kwargs(files[Role.WORKER]))
        worker.registerFunction(FUNCTION)
        worker.waitForServer(30)
        threading.Thread(target=_answer, args=(worker,), daemon=True).start()
        client.addServer("127.0.0.1", port, **gear_kwargs(files[Role.SCHEDULER]))
        client.waitForServer(30)
        round_trips = []
        for n in range(count):
            done.clear()
            start = time.perf_counter()
            client.submitJob(gear.TextJob(FUNCTION, json.dumps({"n": n})), timeout=30)
            if not done.wait(30):
                raise SystemExit("a no-op job did not complete")
            round_trips.append(time.perf_counter() - start)
        start = time.perf_counter()
        for n in range(burst):
            client.submitJob(gear.TextJob(FUNCTION, json.dumps({"b": n})), timeout=30)
        rate = burst / (time.perf_counter() - start)
    finally:
        worker.stopWaitingForJobs()
        worker.shutdown()
        client.shutdown()
        if isinstance(server, EmbeddedGearman):
            server.stop()
        else:
            server.shutdown()
    return round_trips, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="round trips, one at a time")
    parser.add_argument("--burst", type=int, default=500, help="jobs submitted back to back")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gear_rt, gear_rate = measure(Path(tmp) / "a", False, args.count, args.burst)
        ours_rt, ours_rate = measure(Path(tmp) / "b", True, args.count, args.burst)

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    table = Table(title=f"Gearman over TLS: {args.count} round trips, bursts of {args.burst}")
    table.add_column("measure")
    table.add_column("gear's sockets (Nagle on)", justify="right")
    table.add_column("gatekeeper's (TCP_NODELAY)", justify="right")
    table.add_column("ratio", justify="right")
    for name, a, b in [
        ("round trip p50 ms", ms(gear_rt, 50), ms(ours_rt, 50)),
        ("round trip p99 ms", ms(gear_rt, 99), ms(ours_rt, 99)),
        ("round trip mean ms", statistics.fmean(gear_rt) * 1000, statistics.fmean(ours_rt) * 1000),
    ]:
        table.add_row(name, f"{a:.2f}", f"{b:.2f}", f"{a / b:.1f}x faster")
    table.add_row(
        "SUBMIT_JOBs answered/s",
        f"{gear_rate:.0f}",
        f"{ours_rate:.0f}",
        f"{ours_rate / gear_rate:.1f}x",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
