"""The whole daemon against the Gerrit simulator, on each Gearman server and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.db import postgres_server_url, scratch_postgres_database

REPO = Path(__file__).resolve().parents[2]

# Two stacks cover both Gearman servers and both databases without the full matrix.
STACKS = [
    pytest.param(("embedded", "sqlite"), id="embedded-sqlite"),
    pytest.param(
        ("gearmand", "postgresql"),
        id="gearmand-postgresql",
        marks=[pytest.mark.gearmand, pytest.mark.postgresql],
    ),
]


@pytest.fixture(params=STACKS)
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    """A started Sandbox: simulator + gatekeeper, a person's view of the system."""
    gearman, database = request.param
    servers = [request.getfixturevalue("gearmand")] if gearman == "gearmand" else []
    # The Gerrit dialect: 3.x unless a test parametrizes ``gerrit_version``.
    version = request.getfixturevalue("gerrit_version")
    if database == "postgresql":
        server_url = postgres_server_url()
        with scratch_postgres_database(server_url) as url:
            yield from _started(tmp_path, servers, url, version)
    else:
        yield from _started(tmp_path, servers, "", version)


def _started(
    tmp_path: Path, servers: list[tuple[str, int]], url: str, version: str
) -> Iterator[Sandbox]:
    box = Sandbox(
        tmp_path / "sandbox",
        REPO / "layout.yaml",
        gearman_servers=servers,
        database=url,
        gerrit_version=version,
    )
    try:
        box.start()
        yield box
    finally:
        box.stop()
