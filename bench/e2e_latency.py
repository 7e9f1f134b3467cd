"""End-to-end latency: approval reaching the listener -> job's first command on a node.

Runs the whole daemon against the Gerrit simulator (real SSH, git, Gearman,
SQLite, rsync, local provider), approves changes one at a time, each when a
READY node is waiting, and reads the wall-clock time the job's first command
wrote. The baseline, measured in the same run, is the bare cost of that
same command started directly from Python.

``--gearman both`` (the default) runs the daemon twice in the same run:
Gearman over TLS with client certificates (the default) and plain TCP
(``gearman.insecure: true``), so what TLS costs per build shows beside it.

    .venv/bin/python bench/e2e_latency.py [--count 50] [--gearman both|tls|plain]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.node import NodeState
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.sandbox.seed import PROJECTS

FIRST_COMMAND = 'date +%s.%N > "$WORKSPACE/first-command"'

LAYOUT = f"""
pipelines:
  - name: gate
    manager: DependentPipelineManager
    precedence: high
    require:
      open: true
      approval:
        - code-review: 2
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
  - name: gate-devstack-vm
    node: devstack-vm
    run: |
      {FIRST_COMMAND}
      mkdir -p logs && cp first-command logs/
    logs: [logs/**]
projects:
""" + "".join(f"  - name: {p}\n    gate: [gate-devstack-vm]\n" for p in PROJECTS)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def baseline(count: int, workdir: Path) -> list[float]:
    """The same first command, run directly: spawn to the time it writes."""
    out = []
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"WORKSPACE": str(workdir), "PATH": "/usr/bin:/bin"}
    for _ in range(count):
        start = time.time()
        subprocess.run(["bash", "-c", FIRST_COMMAND], env=env, check=True)
        out.append(float((workdir / "first-command").read_text()) - start)
    return out


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        pause.wait(0.01)


def run_daemon(
    root: Path, count: int, insecure: bool, out: Console
) -> tuple[list[float], dict[str, list[float]]]:
    """End-to-end latencies and their phases for ``count`` approvals."""
    root.mkdir(parents=True)
    layout = root / "layout.yaml"
    layout.write_text(LAYOUT)
    extra = (
        {"gearman": {"listen": {"host": "127.0.0.1", "port": 0}, "insecure": True}}
        if insecure
        else {}
    )
    box = Sandbox(root / "sandbox", layout, worker_count=1, extra_site=extra)
    approvals: dict[int, float] = {}

    def on_event(event: TriggerEvent) -> None:
        if event.type == "comment-added" and any(
            a.label == "Workflow" for a in event.changed_approvals()
        ):
            approvals[event.change or 0] = time.time()

    box.event_hooks.append(on_event)
    box.start()
    try:
        assert box.app is not None and box.sim is not None
        nodes = NodeStore(box.app.db)
        out.print(f"{'plain TCP' if insecure else 'TLS'}: pushing {count} changes ...")
        changes = [
            box.push_change("openstack/nova", f"Bench change {i}", {f"bench/{i}.txt": "x\n"})
            for i in range(count)
        ]
        box.wait_until_settled()
        out.print("approving them one at a time, each on a READY node ...")
        latencies, phases = (
            [],
            {"event->dispatch": [], "dispatch->node": [], "node->first command": []},
        )
        for number, ps in changes:
            wait(lambda: bool(nodes.list(state=NodeState.READY)), 60, "a READY node")
            box.approve(number, ps)
            box.wait_until_settled(120)
            [record] = box.app.scheduler.context.builds.for_change(number)  # type: ignore[union-attr]
            assert record.result == "SUCCESS", (number, record.result)
            log_dir = box.site.log_root / record.log_url[len(box.site.log_url) :]  # type: ignore[operator]
            first = float((log_dir / "logs" / "first-command").read_text())
            latencies.append(first - approvals[number])
            phases["event->dispatch"].append(record.dispatched_at - approvals[number])
            phases["dispatch->node"].append((record.start_time or 0) - record.dispatched_at)
            phases["node->first command"].append(first - (record.start_time or 0))
    finally:
        box.stop()
    return latencies, phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument(
        "--gearman",
        choices=["both", "tls", "plain"],
        default="both",
        help="Gearman over TLS (the default), plain TCP (insecure: true), or both in one run",
    )
    args = parser.parse_args()
    out = Console(highlight=False)
    modes = {"both": [False, True], "tls": [False], "plain": [True]}[args.gearman]
    runs: dict[bool, tuple[list[float], dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        for insecure in modes:
            root = Path(tmp) / ("plain" if insecure else "tls")
            runs[insecure] = run_daemon(root, args.count, insecure, out)
        base = baseline(args.count, Path(tmp) / "baseline")

    table = Table(
        title=f"approval reaching the listener -> job's first command ({args.count} approvals)"
    )
    for column in ("measure", "p50 ms", "p99 ms", "mean ms", "p50 / baseline p50"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    base_p50 = percentile(base, 50)
    rows: list[tuple[str, list[float]]] = []
    for insecure, (latencies, phases) in runs.items():
        gearman = "plain TCP" if insecure else "TLS"
        rows += [(f"gatekeeper end to end, {gearman}", latencies)]
        rows += [(f"  {name}, {gearman}", values) for name, values in phases.items()]
    rows.append(("baseline: command run directly", base))
    for name, values in rows:
        table.add_row(
            name,
            f"{percentile(values, 50) * 1000:.1f}",
            f"{percentile(values, 99) * 1000:.1f}",
            f"{statistics.mean(values) * 1000:.1f}",
            f"{percentile(values, 50) / base_p50:.1f}x",
        )
    out.print(table)
    if len(runs) == 2:
        tls_p50, plain_p50 = (percentile(runs[k][0], 50) for k in (False, True))
        out.print(f"TLS - plain TCP, end to end p50: {(tls_p50 - plain_p50) * 1000:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
