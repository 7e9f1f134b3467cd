"""What the failure report's flaky line costs the scheduler thread.

A failed job's line ("this job failed on unchanged code in N% of recent
runs") reads that job's runs of the window with one bounded query
(``gatekeeper.insights.flaky.recent_runs``, at most ``JOB_RUNS`` rows). The
builds table has no index on ``job``, so the query walks the window on
``ix_builds_dispatched_at``. The baseline, in the same run on a copy of the
same database, is that query with an index on ``(job, dispatched_at)``: the
ratio says what the index would buy. The whole-window report the web page
and the CLI read (off the scheduler thread) is timed too.

The builds: ``--builds`` over 7 days, a third of them one common job, the
rest spread over 300 jobs, 1 in 9 failing, with real ``ZUUL_CHANGES``.

    .venv/bin/python bench/flaky_query.py [--builds 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, text

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.insights.flaky import JOB_RUNS, flaky_report, recent_runs
from gatekeeper.model.change import change_ref


def fill(db: Database, count: int, now: float) -> None:
    rng = random.Random(18)
    rows = []
    for i in range(count):
        job = "tempest-full" if i % 3 == 0 else f"job-{rng.randrange(300)}"
        number = rng.randrange(1, 100_000)
        at = now - rng.random() * 7 * 86400
        uid = uuid.uuid4().hex
        params = {
            "ZUUL_CHANGES": f"openstack/nova:master:{change_ref(number, 1)}",
            "LOG_PATH": f"{number % 100:02d}/{number}/1/check/{job}/{uid[:7]}",
        }
        rows.append(
            {
                "uuid": uid,
                "job": job,
                "project": "openstack/nova",
                "change": number,
                "patchset": 1,
                "pipeline": "check",
                "dispatched_at": at,
                "end_time": at + 600,
                "result": "FAILURE" if rng.randrange(9) == 0 else "SUCCESS",
                "parameters": json.dumps(params),
            }
        )
    with db.session() as session:
        session.execute(insert(BuildRecord), rows)


def best(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    now = time.time()
    since = now - 7 * 86400
    with tempfile.TemporaryDirectory(prefix="flaky-bench-") as tmp:
        plain_path = Path(tmp) / "plain.db"
        plain = Database(f"sqlite:///{plain_path}")
        plain.migrate()
        fill(plain, args.builds, now)
        plain.dispose()
        indexed_path = Path(tmp) / "indexed.db"
        shutil.copy(plain_path, indexed_path)
        indexed = Database(f"sqlite:///{indexed_path}")
        with indexed.session() as session:
            session.execute(text("CREATE INDEX ix_bench_job ON builds (job, dispatched_at)"))
        plain = Database(f"sqlite:///{plain_path}")
        table = Table(title=f"flaky queries, {args.builds} builds in 7 days (SQLite, median)")
        for column in ("query", "as on main", "with (job, dispatched_at)", "ratio"):
            table.add_column(column)
        cases: list[tuple[str, Callable[[Database], object]]] = [
            (
                "report line: a common job",
                lambda db: recent_runs(db, since, "tempest-full", JOB_RUNS),
            ),
            ("report line: a rare job", lambda db: recent_runs(db, since, "job-7", JOB_RUNS)),
            ("report line: a new job", lambda db: recent_runs(db, since, "no-runs-yet", JOB_RUNS)),
            ("web/CLI: whole window", lambda db: flaky_report(db, 7, now=now)),
        ]
        for name, work in cases:
            on_main = best(functools.partial(work, plain), args.repeat)
            with_index = best(functools.partial(work, indexed), args.repeat)
            table.add_row(
                name,
                f"{on_main * 1000:.1f} ms",
                f"{with_index * 1000:.1f} ms",
                f"{on_main / with_index:.1f}x",
            )
        plain.dispose()
        indexed.dispose()
    Console().print(table)


if __name__ == "__main__":
    main()
