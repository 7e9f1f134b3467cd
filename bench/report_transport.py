"""Report and submit latency over SSH and over REST, against the Gerrit simulator.

A report is what gatekeeper sends when a build ends: a vote and a message on
one patch set (``gerrit review`` over SSH on a cached connection; a
ReviewInput over REST on a pooled keep-alive connection). A submit is the
submit alone, on a change already approved (``gerrit review --submit``; the
submit endpoint). Both transports run in the same run, alternating change by
change, against the same simulator; the baseline of each row is SSH, and the
last column is REST's p50 over SSH's.

    .venv/bin/python bench/report_transport.py [--count 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gatekeeper.config.site import GerritHttpConfig
from gatekeeper.gerrit.rest import GerritRest, bot_tag
from gatekeeper.sandbox.harness import REST_PASSWORD, Sandbox

PROJECT = "openstack/nova"
MESSAGE = "Build succeeded (check pipeline).\n\n- noop http://logs/x : SUCCESS in 1s"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def timed(call: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    out = Console(highlight=False)

    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        root = Path(tmp)
        layout = root / "layout.yaml"
        layout.write_text("pipelines: []\njobs: []\nprojects: []\n")
        box = Sandbox(root / "sandbox", layout, rest=True)
        box.start_gerrit()
        assert box.sim is not None
        ssh = box.connection_for("gatekeeper")
        approver = box.connection_for("bob")
        rest = GerritRest(
            GerritHttpConfig(url=box.sim.http_url, user="gatekeeper", password=REST_PASSWORD)
        )
        try:
            out.print(f"pushing {args.count * 2} changes ...")
            changes = [
                box.push_change(PROJECT, f"Bench change {i}", {f"bench/{i}.txt": f"{i}\n"})
                for i in range(args.count * 2)
            ]
            # Warm both: the SSH connection and the HTTP pool are opened once.
            ssh.version()
            rest.version()
            results: dict[str, list[float]] = {
                "report over SSH": [],
                "report over REST": [],
                "submit over SSH": [],
                "submit over REST": [],
            }
            out.print("reporting on each, SSH and REST in turn ...")
            for i, (number, ps) in enumerate(changes):
                if i % 2 == 0:
                    results["report over SSH"].append(
                        timed(ssh.review, PROJECT, number, ps, MESSAGE, {"Verified": 2})
                    )
                else:
                    results["report over REST"].append(
                        timed(
                            rest.review, number, str(ps), MESSAGE, {"Verified": 2}, bot_tag("check")
                        )
                    )
            out.print("approving and submitting each, SSH and REST in turn ...")
            for i, (number, ps) in enumerate(changes):
                approver.review(PROJECT, number, ps, "", {"Code-Review": 2, "Workflow": 1})
                if i % 2 == 0:
                    results["submit over SSH"].append(
                        timed(ssh.review, PROJECT, number, ps, submit=True)
                    )
                else:
                    results["submit over REST"].append(timed(rest.submit, number))
                assert box.sim.get_change(number).status == "MERGED", number
        finally:
            rest.close()
            ssh.close()
            approver.close()
            box.stop()

    table = Table(title=f"report and submit latency, SSH and REST ({args.count} of each)")
    for column in ("measure", "p50 ms", "p99 ms", "mean ms", "p50 / SSH p50"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for name, values in results.items():
        base = results[name.replace("REST", "SSH")]
        table.add_row(
            name,
            f"{percentile(values, 50) * 1000:.1f}",
            f"{percentile(values, 99) * 1000:.1f}",
            f"{statistics.mean(values) * 1000:.1f}",
            f"{percentile(values, 50) / percentile(base, 50):.2f}x",
        )
    out.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
