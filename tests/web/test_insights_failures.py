"""/insights/failures on real SQLite and PostgreSQL databases filled through
the stores the worker uses: hits per signature per day, the uncategorised failed
builds, the window, and the page in Debian's headless Chromium."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.insights.known_failures import DAY, day_of, record_matches
from gatekeeper.insights.scanner import Match
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

pytestmark = pytest.mark.timeout(60)

#: A job name written by someone hostile: markup that would run if the page
#: pasted it in.
HOSTILE_JOB = '<img src=x onerror="window.gkPwned=1">gate-evil'
SIGNATURE = """\
id: libvirt-eof
description: libvirt closed the connection <b>under</b> nova-compute
bug: https://bugs.launchpad.net/nova/+bug/1643911
patterns: ['libvirtError: End of file']
"""


def site(tmp_path: Path) -> SiteConfig:
    failures = tmp_path / "failures"
    failures.mkdir(exist_ok=True)
    (failures / "libvirt-eof.yaml").write_text(SIGNATURE)
    return SiteConfig().resolve(tmp_path)


def build(db: Database, uuid: str, job: str, result: str, days_ago: float) -> float:
    when = time.time() - days_ago * DAY
    store = BuildStore(db)
    store.dispatched(uuid, job, "openstack/nova", 1000, 2, "check", when)
    store.completed(
        uuid, result, when + 30, log_url=f"http://logs.example.org/{uuid}/", provider="cloud-b"
    )
    return when + 30


def fill(db: Database) -> dict[str, float]:
    """Two builds the signature explains (today and two days ago), one
    failure nothing explains (with a hostile job name), one success."""
    ended = {
        "a" * 32: build(db, "a" * 32, "gate-tempest-dsvm-full", "FAILURE", 0),
        "b" * 32: build(db, "b" * 32, "gate-tempest-dsvm-full", "TIMED_OUT", 2),
        "c" * 32: build(db, "c" * 32, HOSTILE_JOB, "FAILURE", 1),
        "d" * 32: build(db, "d" * 32, "gate-tempest-dsvm-full", "SUCCESS", 1),
        # Older than any window the test asks for.
        "e" * 32: build(db, "e" * 32, "gate-tempest-dsvm-full", "FAILURE", 40),
    }
    line = Match("libvirt-eof", "logs/screen-n-cpu.txt", 7, "libvirtError: End of file")
    record_matches(db, "a" * 32, [line, line])  # two lines of one build: one hit
    record_matches(db, "b" * 32, [line])
    return ended


def client(db: Database, tmp_path: Path) -> TestClient:
    return TestClient(make_app(WebContext(site=site(tmp_path), db=db, live=lambda: {})))


def test_hits_per_signature_per_day_and_the_uncategorised(db: Database, tmp_path: Path) -> None:
    ended = fill(db)
    with client(db, tmp_path) as web:
        data = web.get("/api/insights/failures").json()
        [row] = data["signatures"]
        assert row["id"] == "libvirt-eof" and row["total"] == 2
        assert row["per_day"] == {day_of(ended["b" * 32]): 1, day_of(ended["a" * 32]): 1}
        assert row["bug"] == "https://bugs.launchpad.net/nova/+bug/1643911"
        assert row["last_build"] == "a" * 32
        assert [b["uuid"] for b in data["uncategorised"]] == ["c" * 32]
        assert data["uncategorised"][0]["build_url"].endswith("/build/" + "c" * 32)
        assert data["uncategorised"][0]["provider"] == "cloud-b"

        page = web.get("/insights/failures").text
        assert "libvirt closed the connection &lt;b&gt;under&lt;/b&gt; nova-compute" in page
        assert f'href="/build/{"c" * 32}"' in page
        assert f'href="http://logs.example.org/{"c" * 32}/"' in page
        assert "&lt;img src=x" in page and "<img src=x" not in page

        # A day's window holds today's hit only, and nothing uncategorised.
        one_day = web.get("/api/insights/failures?days=1").json()
        assert one_day["signatures"][0]["total"] == 1 and one_day["uncategorised"] == []
        # 60 days reach the old failure, which no signature explains.
        sixty = web.get("/api/insights/failures?days=60").json()
        assert [b["uuid"] for b in sixty["uncategorised"]] == ["c" * 32, "e" * 32]


@pytest.mark.parametrize("days", ["0", "91", "7d", "-1", "²"], ids=str)
def test_a_bad_window_is_refused(db: Database, tmp_path: Path, days: str) -> None:
    with client(db, tmp_path) as web:
        assert web.get(f"/insights/failures?days={days}").status_code == 400
        assert "days must be" in web.get(f"/api/insights/failures?days={days}").json()["error"]


def test_a_signature_directory_that_does_not_load_is_said_and_hits_still_show(
    db: Database, tmp_path: Path
) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        (tmp_path / "failures" / "broken.yaml").write_text(
            "id: x\ndescription: d\npatterns: ['(']\n"
        )
        page = web.get("/insights/failures").text
        assert "The signatures do not load" in page and "broken.yaml:3: patterns[0]" in page
        assert "libvirt-eof" in page and "(no longer in failures/)" in page


def test_a_browser_shows_the_known_failures_and_follows_an_uncategorised_build(
    sqlite_db: Database, tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    """The page in Chromium: the signature's row with its daily counts, the
    hostile job name as text (nothing of it ran), and the uncategorised
    build's link leading to its build page."""
    import uvicorn

    db = sqlite_db
    fill(db)
    app = make_app(WebContext(site=site(tmp_path), db=db, live=lambda: {"pipelines": []}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        assert server.started, "the web did not start within 20s"
        port = server.servers[0].sockets[0].getsockname()[1]
        browser.get(f"http://127.0.0.1:{port}/insights/failures")
        browser.save_screenshot(str(artifacts / "insights_failures.png"))
        assert browser.title == "Known failures · gatekeeper"
        row = browser.find_element(
            "css selector", '#gk-signatures tr[data-signature="libvirt-eof"]'
        )
        cells = [c.text for c in row.find_elements("css selector", "td")]
        assert cells[0] == "libvirt-eof"
        assert cells[1] == "libvirt closed the connection <b>under</b> nova-compute"
        assert cells[3] == "2"
        # Seven day columns; the two days with a hit say 1.
        assert sorted(c for c in cells[4:-1] if c) == ["1", "1"] and len(cells[4:-1]) == 7
        uncategorised = browser.find_elements("css selector", "#gk-uncategorised tbody tr")
        assert len(uncategorised) == 1
        assert HOSTILE_JOB in uncategorised[0].text
        main = browser.find_element("css selector", "main")
        assert main.find_elements("css selector", "script, img, iframe, svg") == []
        assert browser.execute_script("return window.gkPwned === undefined") is True

        uncategorised[0].find_element("link text", "c" * 7).click()
        assert browser.current_url.endswith("/build/" + "c" * 32)
    finally:
        server.should_exit = True
        thread.join(10)
