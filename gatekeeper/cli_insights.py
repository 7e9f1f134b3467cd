"""``gatekeeper insights`` and ``gatekeeper failures``: why builds fail.

``insights providers`` compares failure rates per node provider, ``insights
flaky`` lists jobs that failed and then passed on unchanged code, and
``failures try`` shows which recent failed builds a new known-failure
signature would have matched, before it is added to the site's ``failures/``.
Each reads the builds table (and the log archive) of the site file given with
``-c``; none changes anything.
"""

from __future__ import annotations

import click


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
