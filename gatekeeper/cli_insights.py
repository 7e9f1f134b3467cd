"""``gatekeeper insights`` and ``gatekeeper failures``: why builds fail.

``insights providers`` compares failure rates per node provider, ``insights
flaky`` lists jobs that failed and then passed on unchanged code, and
``failures try`` shows which recent failed builds a new known-failure
signature would have matched, before it is added to the site's ``failures/``.
Each reads the builds table (and the log archive) of the site file given with
``-c``; none changes anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group()
def insights() -> None:
    """Why builds fail: failure rates per provider, flaky jobs."""


@click.group()
def failures() -> None:
    """Known failures: signatures recognised in failed builds' logs."""


# -- failures try (known failures) ---------------------------------------------


@failures.command("try")
@click.argument("signature_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site file (YAML). Default: ./gatekeeper.yaml if it exists.",
)
@click.option("--days", type=click.IntRange(1, 365), default=7, show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(1, 10000),
    default=500,
    show_default=True,
    help="Scan at most this many failed builds (newest first).",
)
def failures_try(signature_file: Path, site_path: Path | None, days: int, limit: int) -> None:
    """Which failed builds of the last DAYS a new signature would have
    matched, scanning their archived logs; nothing is stored. A signature
    that does not load is an error naming its file, line and key."""
    from rich.console import Console
    from rich.table import Table

    from gatekeeper.config.loader import load_local_site
    from gatekeeper.db.engine import Database
    from gatekeeper.errors import ConfigError, GatekeeperError
    from gatekeeper.insights.known_failures import failed_builds
    from gatekeeper.insights.scanner import Scanner
    from gatekeeper.insights.signatures import load_signature
    from gatekeeper.model.outside import shown
    from gatekeeper.worker.archive import safe_log_dir
    from gatekeeper.worker.recognise import SCAN_SECONDS

    try:
        signature = load_signature(signature_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        site = load_local_site(site_path)
        db = Database(site.database)
        try:
            db.migrate()
            builds = failed_builds(db, days, limit)
        finally:
            db.dispose()
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    assert site.log_root is not None
    scanner = Scanner([signature])
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ended", "build", "job", "change", "file:line", "line"):
        table.add_column(column, overflow="fold")
    considered = matched = missing = 0
    for build in builds:
        if not signature.applies_to(build.job, build.project, build.branch):
            continue
        considered += 1
        try:
            log_dir = safe_log_dir(site.log_root, build.log_path)
        except ValueError:
            log_dir = None
        if log_dir is None or not log_dir.is_dir():
            missing += 1  # logs removed (logs.keep-days), or never archived
            continue
        result = scanner.scan(log_dir, deadline=time.monotonic() + SCAN_SECONDS)
        if not result.matches:
            continue
        matched += 1
        first = result.matches[0]
        change = f"{build.change},{build.patchset}" if build.change is not None else ""
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(build.ended_at)),
            build.uuid[:12],
            shown(build.job, 80),
            change,
            f"{shown(first.file, 80)}:{first.line_number}",
            shown(first.line, 120),
        )
    console = Console(width=200, soft_wrap=True, markup=False, highlight=False)
    if matched:
        console.print(table)
    summary = (
        f"{signature.id}: matched {matched} of {considered} failed builds of the last {days} days"
    )
    if missing:
        summary += f" ({missing} without logs)"
    console.print(summary)


def register(main: click.Group) -> None:
    """Add ``insights`` and ``failures`` to the ``gatekeeper`` command."""
    main.add_command(insights)
    main.add_command(failures)
