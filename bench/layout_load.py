"""Loading a big layout: ``load_layout`` against the bare C YAML parse of the same file.

The layout is OpenStack's 2015 ``layout.yaml`` (804 projects, 15 pipelines),
loaded with ``includes=False``. The baseline, measured in the same run, is
``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same text: the least any
loader has to do. Both read the file each time. Time is the median and the
minimum of several interleaved repetitions; memory is the tracemalloc peak of
one run in this process and the maximum RSS of a fresh interpreter doing one
run (beside one that only imports the modules).

    .venv/bin/python bench/layout_load.py [--repeat 7] [--layout FILE]
"""

from __future__ import annotations

import argparse
import gc
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from gatekeeper.config.layout import load_layout

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata" / "layouts"
DEFAULT_LAYOUT = SHARED / "openstack-project-config-2015.yaml"
TARGET = 2.0


def c_parse(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def gatekeeper_load(path: Path) -> Any:
    return load_layout(path, includes=False)


MEASURES: dict[str, Callable[[Path], Any]] = {
    "baseline: yaml.load CSafeLoader": c_parse,
    "load_layout, includes=False": gatekeeper_load,
}


def timed(fn: Callable[[Path], Any], path: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(path)
    return time.perf_counter() - start


def traced_peak(fn: Callable[[Path], Any], path: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def child_rss(mode: str, path: Path) -> int:
    """Maximum RSS (bytes) of a fresh interpreter running ``mode`` once."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--layout", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip()) * 1024


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` also
    counts the parent's when the child was spawned with vfork, as subprocess does.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(mode: str, path: Path) -> int:
    if mode != "idle":
        list(MEASURES.values())[int(mode)](path)
    print(peak_rss_kib())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each (default 7)")
    parser.add_argument("--layout", type=Path, default=DEFAULT_LAYOUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return run_child(args.child, args.layout)
    if not args.layout.is_file():
        print(f"{args.layout} is absent (shared test data comes with the workspace)")
        return 2

    out = Console()
    names = list(MEASURES)
    # Children first, while this process is still small.
    idle = child_rss("idle", args.layout)
    rss = {name: child_rss(str(index), args.layout) for index, name in enumerate(names)}
    for fn in MEASURES.values():  # warm up: imports, regex caches, pydantic validators
        fn(args.layout)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeat):
        for name in names:  # interleaved, so drift hits both alike
            times[name].append(timed(MEASURES[name], args.layout))
    peaks = {name: traced_peak(MEASURES[name], args.layout) for name in names}

    mib = 1024 * 1024
    floor_median = statistics.median(times[names[0]])
    floor_min = min(times[names[0]])
    table = Table(
        title=f"{args.layout.name}, {args.repeat} runs each",
        caption="ratio: median / baseline median; py peak: tracemalloc; RSS: peak of a fresh "
        f"interpreter doing one run ({idle / mib:.0f} MiB when it only imports)",
    )
    for column in ("measure", "median ms", "min ms", "ratio", "min ratio", "py peak", "RSS"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name in names:
        table.add_row(
            name,
            f"{statistics.median(times[name]) * 1000:.1f}",
            f"{min(times[name]) * 1000:.1f}",
            f"{statistics.median(times[name]) / floor_median:.2f}x",
            f"{min(times[name]) / floor_min:.2f}x",
            f"{peaks[name] / mib:.1f} MiB",
            f"{rss[name] / mib:.0f} MiB",
        )
    out.print(table)
    ratio = statistics.median(times[names[1]]) / floor_median
    verdict = "met" if ratio <= TARGET else "NOT met"
    out.print(f"target: load within {TARGET:.0f}x of the bare C parse (median): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
