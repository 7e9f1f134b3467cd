"""The whole daemon against the Gerrit simulator, on each Gearman server and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.db import postgres_server_url, scratch_postgres_database
from tests.fixtures.gearmand import TlsGearman

REPO = Path(__file__).resolve().parents[2]

# Three stacks cover the Gearman servers and both databases without the full
# matrix. The embedded server and geard speak TLS with client certificates;
# Debian's gearmand cannot (it ignores --ssl), so its site is insecure.
STACKS = [
    pytest.param(("embedded", "sqlite"), id="embedded-sqlite"),
    pytest.param(
        ("gearmand", "postgresql"),
        id="gearmand-postgresql",
        marks=[pytest.mark.gearmand, pytest.mark.postgresql],
    ),
    pytest.param(("geard", "sqlite"), id="geard-sqlite"),
]


@pytest.fixture(params=STACKS)
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    """A started Sandbox: simulator + gatekeeper, a person's view of the system."""
    gearman, database = request.param
    options: dict[str, Any] = {}
    if gearman == "gearmand":
        options = {
            "gearman_servers": [request.getfixturevalue("gearmand")],
            "gearman_insecure": True,
        }
    elif gearman == "geard":
        geard: TlsGearman = request.getfixturevalue("geard")
        options = {"gearman_servers": [geard.address], "gearman_tls_dir": geard.tls_dir}
    # The Gerrit dialect: 3.x unless a test parametrizes ``gerrit_version``.
    options["gerrit_version"] = request.getfixturevalue("gerrit_version")
    if database == "postgresql":
        server_url = postgres_server_url()
        with scratch_postgres_database(server_url) as url:
            yield from _started(tmp_path, options, url)
    else:
        yield from _started(tmp_path, options, "")


def _started(tmp_path: Path, options: dict[str, Any], url: str) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox", REPO / "layout.yaml", database=url, **options)
    try:
        box.start()
        yield box
    finally:
        box.stop()
