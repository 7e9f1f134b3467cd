"""The web's frame: health endpoints and the headers every response carries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
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


def test_a_real_browser_loads_the_stylesheet_under_the_policy(
    db: Database, tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    """The frame in Debian's headless Chromium: the page renders with its
    stylesheet, and the browser reports no CSP violation."""
    import threading

    import uvicorn

    site = SiteConfig().resolve(tmp_path)
    app = make_app(WebContext(site=site, db=db, live=lambda: {"pipelines": []}))

    async def frame(request: Any) -> Any:
        from gatekeeper.web.templating import templates

        return templates.TemplateResponse(request, "base.html", {})

    app.router.routes.append(Route("/frame", frame))  # the frame alone, for this test

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        browser.get(f"http://127.0.0.1:{port}/frame")
        header = browser.find_element("css selector", ".gk-header")
        assert header.value_of_css_property("background-color") == "rgba(38, 50, 56, 1)"
        browser.save_screenshot(str(artifacts / "frame.png"))
        errors = [
            e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert errors == []
    finally:
        server.should_exit = True
        thread.join(10)
