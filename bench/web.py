"""The status page's cost: building ``/status.json`` and serving it.

The real scheduler, pipeline managers and build store (SQLite) hold 400
changes across 20 projects in one gate queue, every build running (Gerrit,
Gearman and the reporter are the in-process doubles of
``bench/gate_queue.py``). It measures:

- building status.json: the scheduler's snapshot (``operations.status``),
  turned into Zuul v2.5's shape and serialised, p50/p99 over 50 runs,
  against ``json.dumps`` of the same finished dict in the same run
  (target: within 3x);
- status requests per second from 50 concurrent clients (httpx2's
  AsyncClient) against the real app under uvicorn, beside ``/health/live``
  (the cheapest route) in the same run.

    .venv/bin/python bench/web.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from gate_queue import LAYOUT, PROJECTS, Dispatcher, Reporter, Source

from gatekeeper.config.layout import load_layout
from gatekeeper.config.site import SiteConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.model.build import BuildResult
from gatekeeper.model.change import Change
from gatekeeper.scheduler import operations
from gatekeeper.scheduler.dependent import DependentPipelineManager
from gatekeeper.scheduler.scheduler import Scheduler
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from gatekeeper.web.server import WebServer
from gatekeeper.web.zuul_status import to_zuul


class CountingDispatcher(Dispatcher):
    """gate_queue's Gearman double, with the count the status reports."""

    refused_results = 0


ITEMS = 400
RUNS = 50
CLIENTS = 50
REQUESTS = 2000


def queued_scheduler(root: Path) -> tuple[Scheduler, Database]:
    layout_path = root / "layout.yaml"
    layout_path.write_text(LAYOUT)
    database = Database(f"sqlite:///{root / 'state.db'}")
    database.migrate()
    builds = BuildStore(database)
    source = Source()
    scheduler = Scheduler(
        load_layout(layout_path),
        source,  # type: ignore[arg-type]
        CountingDispatcher(),  # type: ignore[arg-type]
        builds,
        Reporter(),
        "ssh://gerrit",
        "file:///",
    )
    [gate] = scheduler.managers
    assert isinstance(gate, DependentPipelineManager)
    for number in range(1, ITEMS + 1):
        change = Change(PROJECTS[number % len(PROJECTS)], "master", number, 1)
        change.ref, change.subject, change.owner = f"refs/changes/{number}/1", "Fix", "alice"
        change.files = ["/COMMIT_MSG", "x.py"]
        source.changes[number] = change
        gate.enqueue_with_needs(change, gate.select(change))
    scheduler._run_once()  # dispatches every build
    now = time.time()
    for item in gate.items:
        for build in item.builds.values():
            build.started_at = now
    # A history for the estimates: ten successful runs of every job.
    for job in {j for item in gate.items for j in gate.job_names(item)}:
        for n in range(10):
            uuid = f"{job}-{n}"
            builds.dispatched(uuid, job, "bench/project-00", 1, 1, "gate", now - 600)
            builds.started(uuid, "node", "local", "bench", now - 600, "")
            builds.completed(uuid, BuildResult.SUCCESS.value, now - 600 + 300 + n)
    return scheduler, database


def build_times(scheduler: Scheduler) -> tuple[list[float], list[float], int]:
    built, dumped = [], []
    size = 0
    for _ in range(RUNS):
        start = time.perf_counter()
        status = to_zuul(operations.status(scheduler), "http://127.0.0.1:8080/")
        body = json.dumps(status, separators=(",", ":"))
        built.append(time.perf_counter() - start)
        start = time.perf_counter()
        json.dumps(status, separators=(",", ":"))
        dumped.append(time.perf_counter() - start)
        size = len(body)
    return built, dumped, size


async def hammer(url: str) -> float:
    """Requests per second from CLIENTS concurrent clients, REQUESTS in all."""
    left = REQUESTS

    async def client(http: httpx2.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await http.get(url)
            assert response.status_code == 200, response.status_code

    limits = httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as http:
        await http.get(url)
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        return REQUESTS / (time.perf_counter() - start)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    out = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="gk-web-bench-") as tmp:
        root = Path(tmp)
        scheduler, database = queued_scheduler(root)
        built, dumped, size = build_times(scheduler)

        def live() -> dict[str, Any]:
            # The scheduler thread is not running: nothing changes the queues.
            return operations.status(scheduler)

        site = SiteConfig().resolve(root)
        server = WebServer(make_app(WebContext(site, database, live)), "127.0.0.1", 0)
        server.start()
        try:
            status_rate = asyncio.run(hammer(server.url + "status.json"))
            health_rate = asyncio.run(hammer(server.url + "health/live"))
        finally:
            server.stop()
            database.dispose()

    table = Table(title=f"status.json with {ITEMS} items across {len(PROJECTS)} projects")
    for column in ("measure", "p50 ms", "p99 ms", "vs json.dumps"):
        table.add_column(column, justify="right")
    base = statistics.median(dumped)
    table.add_row(
        "json.dumps of the dict", f"{base * 1e3:.2f}", f"{p(dumped, 0.99) * 1e3:.2f}", "1.00x"
    )
    table.add_row(
        "snapshot + v2.5 shape + dumps",
        f"{statistics.median(built) * 1e3:.2f}",
        f"{p(built, 0.99) * 1e3:.2f}",
        f"{statistics.median(built) / base:.2f}x",
    )
    out.print(table)
    out.print(f"status.json: {size / 1024:.0f} KiB")
    rates = Table(title=f"requests per second, {CLIENTS} concurrent clients, uvicorn")
    for column in ("route", "req/s", "vs /health/live"):
        rates.add_column(column, justify="right")
    rates.add_row("/health/live", f"{health_rate:,.0f}", "1.00x")
    rates.add_row("/status.json", f"{status_rate:,.0f}", f"{status_rate / health_rate:.2f}x")
    out.print(rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
