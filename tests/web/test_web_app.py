"""The web's frame: health endpoints and the headers every response carries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.errors import DispatchError
from gatekeeper.web.app import CSP, make_app
from gatekeeper.web.context import WebContext


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    yield database
    database.dispose()


def client(db: Database, tmp_path: Path, live_ok: bool = True) -> TestClient:
    def live() -> Mapping[str, object]:
        if not live_ok:
            raise DispatchError("no scheduler answered status within 5s")
        return {"pipelines": []}

    site = SiteConfig().resolve(tmp_path)
    return TestClient(make_app(WebContext(site=site, db=db, live=live)))


def test_live_and_ready(db: Database, tmp_path: Path) -> None:
    with client(db, tmp_path) as web:
        assert web.get("/health/live").json() == {"status": "ok"}
        ready = web.get("/health/ready")
        assert ready.status_code == 200
        assert ready.headers["content-security-policy"] == CSP
        assert ready.headers["x-content-type-options"] == "nosniff"


def test_not_ready_without_a_scheduler(db: Database, tmp_path: Path) -> None:
    with client(db, tmp_path, live_ok=False) as web:
        ready = web.get("/health/ready")
        assert ready.status_code == 503
        assert "no scheduler answered" in ready.json()["why"]


def test_static_files_carry_the_policy_too(db: Database, tmp_path: Path) -> None:
    with client(db, tmp_path) as web:
        css = web.get("/static/gatekeeper.css")
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]
        assert css.headers["content-security-policy"] == CSP
        assert web.get("/static/../templating.py").status_code == 404
