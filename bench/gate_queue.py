"""Gate scheduler cost as the queue grows: one pass, a reset of everything, events.

The real scheduler, pipeline managers, router and build store (SQLite) run
on a layout of 20 projects sharing one gate queue. Gerrit, Gearman and the
reporter are replaced by in-process doubles at their one-method seams
(builds "complete" when the benchmark says so), since their cost is not the
scheduler's. For 50, 100, 200 and 400 queued changes it measures:

- an idle pass (every build running, nothing to do),
- the pass after the head's build fails: every item behind is reset (builds
  stopped, re-dispatched on the new state) and the head is reported,
- trigger events per second (comments that enter no pipeline) while queued.

The baseline is the 50-item row, in the same run: cost per item must stay
flat (linear growth per pass).

    .venv/bin/python bench/gate_queue.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gatekeeper.config.layout import load_layout
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.model.build import BuildResult
from gatekeeper.model.change import Change
from gatekeeper.model.events import Account, TriggerEvent
from gatekeeper.scheduler.dependent import DependentPipelineManager
from gatekeeper.scheduler.reporter import ReportOutcome
from gatekeeper.scheduler.reports import Report
from gatekeeper.scheduler.scheduler import Scheduler

PROJECTS = [f"bench/project-{i:02d}" for i in range(20)]
SIZES = (50, 100, 200, 400)

LAYOUT = """
pipelines:
  - name: gate
    manager: dependent
    window: 0
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
jobs:
  - name: integrated
    node: devstack-vm
    run: "true"
projects:
""" + "".join(f"  - name: {p}\n    gate: [integrated, unit-{i}]\n" for i, p in enumerate(PROJECTS))


class Source:
    """Gerrit's answers: every change approved, open, needing nothing."""

    def __init__(self) -> None:
        self.changes: dict[int, Change] = {}

    def get_change(self, number: int) -> Change | None:
        return self.changes.get(number)

    def change_for_event(self, event: TriggerEvent) -> Change | None:
        return self.changes.get(event.change or 0)

    def changes_with_id(self, change_id: str) -> list[Change]:
        return []

    def changes_depending_on(self, change: Change) -> list[Change]:
        return []


class Dispatcher:
    """Gearman: remembers what was submitted and stopped."""

    def __init__(self) -> None:
        self.submitted = 0
        self.canceled = 0

    def submit(
        self, uuid: str, params: dict[str, str], spec: Any, precedence: str, attempts: int = 3
    ) -> None:
        self.submitted += 1

    def cancel(self, uuid: str, worker: str = "") -> None:
        self.canceled += 1

    def deferred(self) -> AbstractContextManager[None]:
        # Submits are only counted: holding them back changes nothing here.
        return nullcontext()


class Reporter:
    def __init__(self) -> None:
        self.reports = 0

    def deliver(self, report: Report, stop: threading.Event) -> ReportOutcome:
        self.reports += 1
        return ReportOutcome(report, sent=True)


def run(size: int, root: Path) -> dict[str, float]:
    layout_path = root / f"layout-{size}.yaml"
    layout_path.write_text(LAYOUT)
    layout = load_layout(layout_path)
    database = Database(f"sqlite:///{root / f'state-{size}.db'}")
    database.migrate()
    source, dispatcher, reporter = Source(), Dispatcher(), Reporter()
    scheduler = Scheduler(
        layout,
        source,
        dispatcher,
        BuildStore(database),
        reporter,
        "ssh://gerrit",
        "file:///",  # type: ignore[arg-type]
    )
    [gate] = scheduler.managers
    assert isinstance(gate, DependentPipelineManager)
    for number in range(1, size + 1):
        project = PROJECTS[number % len(PROJECTS)]
        change = Change(project, "master", number, 1, ref=f"refs/changes/{number}/1")
        change.files = ["/COMMIT_MSG", "x.py"]
        source.changes[number] = change
        gate.enqueue_with_needs(change, gate.select(change))
    scheduler._run_once()  # dispatches every build
    for item in gate.items:  # every build is running
        for build in item.builds.values():
            build.started_at = time.time()

    idle = []
    for _ in range(5):
        start = time.perf_counter()
        scheduler._run_once()
        idle.append(time.perf_counter() - start)

    head = gate.items[0]
    for build in head.builds.values():
        build.result, build.ended_at = BuildResult.FAILURE, time.time()
    before = dispatcher.submitted
    start = time.perf_counter()
    scheduler._run_once()
    reset = time.perf_counter() - start
    redispatched = dispatcher.submitted - before

    events = [
        TriggerEvent(
            type="comment-added",
            project=PROJECTS[n % len(PROJECTS)],
            branch="master",
            change=n % size + 1,
            patchset=1,
            comment="Looks good",
            account=Account("reviewer"),
        )
        for n in range(2000)
    ]
    start = time.perf_counter()
    for event in events:
        scheduler._handle_trigger(event)
    rate = len(events) / (time.perf_counter() - start)
    database.dispose()
    return {
        "idle": statistics.median(idle),
        "reset": reset,
        "redispatched": redispatched,
        "rate": rate,
    }


def main() -> int:
    out = Console(highlight=False)
    results = {}
    with tempfile.TemporaryDirectory(prefix="gk-gate-bench-") as tmp:
        for size in SIZES:
            results[size] = run(size, Path(tmp))
    base = results[SIZES[0]]
    table = Table(title="gate scheduler cost by queue length (one queue, 20 projects, 2 jobs)")
    for column in (
        "items",
        "idle pass ms",
        "µs/item",
        "reset pass ms",
        "builds re-run",
        "µs/item",
        "per-item vs 50",
        "events/s",
    ):
        table.add_column(column, justify="right")
    for size, r in results.items():
        per_item = r["reset"] / size * 1e6
        table.add_row(
            str(size),
            f"{r['idle'] * 1000:.2f}",
            f"{r['idle'] / size * 1e6:.1f}",
            f"{r['reset'] * 1000:.1f}",
            f"{r['redispatched']:.0f}",
            f"{per_item:.0f}",
            f"{per_item / (base['reset'] / SIZES[0] * 1e6):.2f}x",
            f"{r['rate']:,.0f}",
        )
    out.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
