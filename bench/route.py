"""Routing rate: Gerrit event lines routed through OpenStack's production layout.

Generates events from the real 2.13 shapes in ``../shared/testdata/gerrit``
(new patchsets, recheck and plain comments, approval transitions and
repeated votes, merges, branch and tag updates) across the layout's
projects, branches and some projects it does not know, then routes them
the way the scheduler does: each event once, for every pipeline
(:meth:`Router.decisions`), the change looked up at most once. The
baseline, in the same run, is ``json.loads`` alone on the same lines: the
floor any router pays. The rows:

- ``parse_event only``: reading the lines (the listener thread's share);
- ``routing only``: :meth:`Router.decisions` on the parsed events, the
  change made from the event (the scheduler thread's share; the daemon asks
  Gerrit instead);
- ``gatekeeper route``: the whole dry run per line (parse, route, the JSON
  object it prints), which is ``parse_event`` plus ``routing`` plus output.

    .venv/bin/python bench/route.py [--count 100000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import functools
import json
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gatekeeper.config.layout import load_layout
from gatekeeper.gerrit.events import parse_event
from gatekeeper.scheduler.dryrun import change_from_event, route_lines
from gatekeeper.scheduler.routing import Router

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"
LAYOUT = SHARED / "layouts" / "openstack-project-config-2015.yaml"
SHAPES = [SHARED / "gerrit" / "events-documented-2.13.jsonl"]

COMMENTS = [
    "recheck",
    "Patch Set 3:\n\nrecheck",
    "Patch Set 3: Code-Review+1\n\nreverify",
    "Patch Set 3:\n\nLooks good to me, thanks!",
    "Patch Set 3: Code-Review-1\n\n(2 comments)\n\nPlease add a unit test.",
    "Patch Set 3: Workflow+1",
]
BRANCHES = ["master"] * 6 + ["stable/liberty", "stable/kilo", "feature/pecan"]


def generate(count: int, projects: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    shapes: dict[str, list[dict[str, Any]]] = {}
    for path in SHAPES:
        for line in path.read_text().splitlines():
            data = json.loads(line)
            shapes.setdefault(data["type"], []).append(data)
    kinds = ["patchset-created"] * 3 + ["comment-added"] * 5 + ["change-merged", "ref-updated"]
    lines = []
    for n in range(count):
        kind = rng.choice(kinds)
        data = copy.deepcopy(rng.choice(shapes[kind]))
        project = rng.choice(projects) if rng.random() < 0.9 else f"unknown/project-{n % 50}"
        branch = rng.choice(BRANCHES)
        if "change" in data:
            data["change"].update(project=project, branch=branch, number=str(100000 + n))
            data["project"] = project
        if kind == "comment-added":
            data["comment"] = rng.choice(COMMENTS)
            transition = rng.random() < 0.3
            data["approvals"] = [
                {"type": "Code-Review", "description": "Code-Review", "value": "2"},
                {"type": "Workflow", "description": "Workflow", "value": "1"}
                | ({"oldValue": "0"} if transition else {}),
            ]
        if kind == "ref-updated":
            ref = rng.choice([f"refs/heads/{branch}", branch, f"refs/tags/{n % 30}.0.0"])
            data["refUpdate"].update(project=project, refName=ref)
        lines.append(json.dumps(data))
    return lines


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top of a profile")
    args = parser.parse_args()
    if not LAYOUT.exists():
        print(f"{LAYOUT} is absent: ../shared must be beside the repository", file=sys.stderr)
        return 1
    out = Console(highlight=False)
    layout = load_layout(LAYOUT, includes=False)
    lines = generate(args.count, layout.project_names)
    enqueued = sum(len(r.get("enqueue", ())) for r in route_lines(layout, lines))
    out.print(f"{len(lines)} events, {enqueued} enqueue decisions")

    def parse_only() -> None:
        for line in lines:
            json.loads(line)

    def route_all() -> None:
        for _ in route_lines(layout, lines):
            pass

    def read_events() -> None:
        for line in lines:
            parse_event(line)

    events = [event for event in map(parse_event, lines) if event is not None]

    def decide_all() -> None:
        # A new Router each time, as route_lines makes one: both start cold.
        router = Router(layout)
        for event in events:
            for _ in router.decisions(event, functools.partial(change_from_event, event)):
                pass

    base = timed(parse_only, args.repeat)
    routed = timed(route_all, args.repeat)
    read = timed(read_events, args.repeat)
    decided = timed(decide_all, args.repeat)
    table = Table(title=f"routing {len(lines)} events through the OpenStack 2015 layout")
    for column in ("measure", "events/s (median)", "µs/event", "rate / json.loads rate"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    base_rate = len(lines) / statistics.median(base)
    rows = (
        ("json.loads only (baseline)", base),
        ("parse_event only", read),
        ("routing only (Router.decisions)", decided),
        ("gatekeeper route (parse + route + output)", routed),
    )
    for name, times in rows:
        rate = len(lines) / statistics.median(times)
        table.add_row(name, f"{rate:,.0f}", f"{1e6 / rate:.1f}", f"{rate / base_rate:.2f}")
    out.print(table)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(route_all)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
