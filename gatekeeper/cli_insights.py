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
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from gatekeeper.errors import GatekeeperError
from gatekeeper.model.outside import shown

if TYPE_CHECKING:
    from gatekeeper.config.site import SiteConfig
    from gatekeeper.db.engine import Database
    from gatekeeper.insights.flaky import Run


site_option = click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site file (YAML). Default: ./gatekeeper.yaml if it exists.",
)


def open_site(site_path: Path | None) -> tuple[SiteConfig, Database]:
    """The site file and its database, migrated; a bad site file or an
    unreachable database is a click error saying why."""
    from gatekeeper.config.loader import load_local_site
    from gatekeeper.db.engine import Database

    try:
        site = load_local_site(site_path)
        db = Database(site.database)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        db.migrate()
    except GatekeeperError as exc:
        db.dispose()
        raise click.ClickException(str(exc)) from exc
    return site, db


@click.group()
def insights() -> None:
    """Why builds fail: failure rates per provider, flaky jobs."""


@click.group()
def failures() -> None:
    """Known failures: signatures recognised in failed builds' logs."""


# -- failures try (known failures) ---------------------------------------------


@failures.command("try")
@click.argument("signature_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@site_option
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
    site, db = open_site(site_path)
    try:
        builds = failed_builds(db, days, limit)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.dispose()
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


# -- insights flaky (flaky jobs) ------------------------------------------------


@insights.command("flaky")
@site_option
@click.option("--job", help="Only this job.")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="The window: builds dispatched in the last N days.",
)
def insights_flaky(site_path: Path | None, job: str | None, days: float) -> None:
    """Jobs that failed and then passed on unchanged code.

    An incident is a job's failure (FAILURE or TIMED_OUT) followed by its
    pass in the same pipeline on the same patch set with the same changes
    ahead (the same ZUUL_CHANGES), as a recheck does. The flaky rate is the
    failed runs of incidents over all the job's passes and failures in the
    window. First each job's rate, flakiest first; then the incidents,
    newest first, with their failed and passing builds."""
    from gatekeeper.insights.flaky import flaky_report

    _, db = open_site(site_path)
    try:
        report = flaky_report(db, days, job)
    finally:
        db.dispose()
    console = Console(width=200, soft_wrap=True, markup=False, highlight=False)
    rates = _flaky_table("job", "runs", "failures", "flaky failures", "incidents", "flaky rate")
    for rate in report.rates:
        rates.add_row(
            shown(rate.job),
            str(rate.runs),
            str(rate.failures),
            str(rate.flaky_failures),
            str(rate.incidents),
            f"{rate.percent}%",
        )
    window = f"{days:g} day{'' if days == 1 else 's'}"
    console.print(f"flaky jobs over the last {window}" + (f" (job {shown(job)})" if job else ""))
    if not report.rates:
        console.print("no finished builds in the window")
        return
    console.print(rates)
    if report.truncated:
        console.print("(the window holds more builds than are read: only the newest counted)")
    console.print("")
    if not report.incidents:
        console.print("no flaky incidents")
        return
    table = _flaky_table("passed at", "job", "project", "change", "pipeline", "failed", "passed")
    for incident in report.incidents:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(incident.when)),
            shown(incident.job),
            shown(incident.project),
            f"{incident.change},{incident.patchset}",
            shown(incident.pipeline),
            " ".join(_flaky_run(run) for run in incident.failed),
            _flaky_run(incident.passed),
        )
    console.print(f"{len(report.incidents)} incident{'' if len(report.incidents) == 1 else 's'}")
    console.print(table)


def _flaky_run(run: Run) -> str:
    """``<uuid> (RESULT on provider/region/zone)``."""
    where = f" on {shown(run.where)}" if run.where else ""
    return f"{run.uuid[:12]} ({run.result}{where})"


def _flaky_table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# -- insights providers (failure rates per provider) --------------------------


@insights.command("providers")
@site_option
@click.option("--job", help="Only this job (default: each job, and all jobs together).")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True, max=366),
    help="The window, in days before now (default: the site's insights.providers.days, 7).",
)
def insights_providers(site_path: Path | None, job: str | None, days: float | None) -> None:
    """Failure rate per provider, per job and for all jobs together.

    FAILURE and TIMED_OUT count as failures, SUCCESS as a pass; other
    results are left out. The interval is Wilson's; FLAGGED means Fisher's
    one-sided exact test against the other providers together, Holm-corrected
    over the comparisons shown, is at or below the site's level. A provider
    (or the rest) with fewer than ``min-runs`` runs is not compared."""
    from rich.console import Console
    from rich.table import Table

    from gatekeeper.insights.providers import provider_report
    from gatekeeper.model.outside import shown

    site, db = open_site(site_path)
    config = site.insights.providers
    try:
        report = provider_report(
            db, days if days is not None else config.days, job, config.level, config.min_runs
        )
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot read the builds: {exc}") from exc
    finally:
        db.dispose()
    console = Console(width=200, soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"builds dispatched in the last {report.days:g} days; flagged at family-wise "
        f"level {report.level:g}, at least {report.min_runs} runs a side"
    )
    tables = [each for each in report.tables() if each.rows]
    if not tables:
        console.print("no finished builds on a provider in this window")
    for each in tables:
        table = Table(title=shown(each.title, 200), title_justify="left", box=None)
        table.header_style = "bold"
        for column in ("provider", "runs", "failures", "rate", "interval", "p (Holm)", "flag"):
            table.add_column(column, overflow="fold")
        for row in each.rows:
            table.add_row(
                shown(row.provider, 100),
                str(row.runs),
                str(row.failures),
                f"{100 * row.rate:.1f}%",
                f"{100 * row.low:.1f}-{100 * row.high:.1f}%",
                "not compared" if row.adjusted is None else f"{row.adjusted:.2g}",
                "FLAGGED" if row.flagged else "",
            )
        console.print(table)
