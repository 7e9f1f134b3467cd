"""``gatekeeper insights`` and ``gatekeeper failures``: why builds fail.

``insights providers`` compares failure rates per node provider, ``insights
flaky`` lists jobs that failed and then passed on unchanged code, and
``failures try`` shows which recent failed builds a new known-failure
signature would have matched, before it is added to the site's ``failures/``.
Each reads the builds table (and the log archive) of the site file given with
``-c``; none changes anything.
"""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from gatekeeper.errors import GatekeeperError


@click.group()
def insights() -> None:
    """Why builds fail: failure rates per provider, flaky jobs."""


@click.group()
def failures() -> None:
    """Known failures: signatures recognised in failed builds' logs."""


def register(main: click.Group) -> None:
    """Add ``insights`` and ``failures`` to the ``gatekeeper`` command."""
    main.add_command(insights)
    main.add_command(failures)


# -- insights providers (failure rates per provider) --------------------------


@insights.command("providers")
@click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site file (YAML). Default: ./gatekeeper.yaml if it exists.",
)
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

    from gatekeeper.config.loader import load_local_site
    from gatekeeper.db.engine import Database
    from gatekeeper.insights.providers import provider_report
    from gatekeeper.model.outside import shown

    try:
        site = load_local_site(site_path)
        config = site.insights.providers
        db = Database(site.database)
        db.migrate()
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
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
