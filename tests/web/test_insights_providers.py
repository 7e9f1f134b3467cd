"""``/insights/providers`` and its JSON twin, over HTTP and in Debian's headless
Chromium, on a real SQLite database filled with builds as the workers record them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

pytestmark = pytest.mark.timeout(60)

#: A provider name written by someone hostile: markup that would run if the
#: page pasted it in.
HOSTILE = '<img src="/x" onerror="window.gkPwned = 1">'


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    yield database
    database.dispose()


def fill(db: Database) -> None:
    """A week of tempest: 'west' fails 20 of 40 runs, 'east' 2 of 40, and a
    provider with a hostile name ran it 3 times (too few to compare); pep8
    passes everywhere."""
    now = time.time()
    runs = [("tempest", "west", 20, 40), ("tempest", "east", 2, 40), ("tempest", HOSTILE, 3, 3)]
    runs += [("pep8", "west", 0, 35), ("pep8", "east", 0, 35)]
    with db.session() as session:
        for job, provider, failed, total in runs:
            for i in range(total):
                session.add(
                    BuildRecord(
                        uuid=uuid.uuid4().hex,
                        job=job,
                        pipeline="check",
                        provider=provider,
                        node=f"node-{i}",
                        worker="w1",
                        dispatched_at=now - 3600 - i,
                        result="FAILURE" if i < failed else "SUCCESS",
                        log_url="",
                    )
                )


def context(db: Database, tmp_path: Path) -> WebContext:
    site = SiteConfig.model_validate({}).resolve(tmp_path)
    return WebContext(site=site, db=db, live=lambda: {"pipelines": []})


def test_the_page_flags_the_worse_provider_per_job_and_over_all_jobs(
    db: Database, tmp_path: Path
) -> None:
    fill(db)
    client = TestClient(make_app(context(db, tmp_path)))
    page = client.get("/insights/providers")
    assert page.status_code == 200
    html = page.text
    assert '<tr data-provider="west" class="gk-flagged">' in html
    assert '<tr data-provider="east">' in html
    assert "<td>not compared</td>" in html
    # The hostile name is text, never markup.
    assert HOSTILE not in html and "&lt;img src=" in html
    # The headings: all jobs first, then each job.
    assert html.index("all jobs") < html.index(">pep8<") < html.index(">tempest<")


def test_the_json_twin_has_the_counts_and_the_flags(db: Database, tmp_path: Path) -> None:
    fill(db)
    client = TestClient(make_app(context(db, tmp_path)))
    data = client.get("/api/insights/providers", params={"job": "tempest"}).json()
    [table] = data["tables"]
    rows = {row["provider"]: row for row in table["rows"]}
    assert (rows["west"]["failures"], rows["west"]["runs"], rows["west"]["flagged"]) == (
        20,
        40,
        True,
    )
    assert rows["east"]["flagged"] is False
    assert rows[HOSTILE]["adjusted_p_value"] is None
    low, high = rows["west"]["interval"]
    assert low < 0.5 < high


@pytest.mark.parametrize("days", ["soon", "0", "-3", "nan", "100000"], ids=str)
def test_a_bad_window_is_refused_with_a_reason(db: Database, tmp_path: Path, days: str) -> None:
    client = TestClient(make_app(context(db, tmp_path)))
    page = client.get("/insights/providers", params={"days": days})
    assert page.status_code == 400 and "days must be" in page.text
    assert client.get("/api/insights/providers", params={"days": days}).status_code == 400


def test_builds_older_than_the_window_are_not_shown(db: Database, tmp_path: Path) -> None:
    fill(db)
    client = TestClient(make_app(context(db, tmp_path)))
    # Every build is an hour old or more: a window of a minute holds none.
    page = client.get("/insights/providers", params={"days": str(60 / 86400)})
    assert 'id="gk-no-builds"' in page.text


def test_a_browser_shows_the_flag_and_the_hostile_name_as_text(
    db: Database, tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    """/insights/providers in the real Chromium: the flagged provider's row
    says so, and a provider name full of markup is shown as text and runs
    nothing."""
    import uvicorn

    fill(db)
    app = make_app(context(db, tmp_path))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        browser.get(f"http://127.0.0.1:{port}/insights/providers")
        browser.save_screenshot(str(artifacts / "insights_providers.png"))
        assert browser.title == "Failures by provider · gatekeeper"
        overall = browser.find_element("css selector", 'table[data-job=""]')
        flagged = overall.find_elements("css selector", "tr.gk-flagged")
        assert [row.get_attribute("data-provider") for row in flagged] == ["west"]
        assert flagged[0].find_element("css selector", "td.gk-flag").text == "significantly worse"
        names = [e.text for e in overall.find_elements("css selector", "tbody td:first-child")]
        assert HOSTILE in names
        main = browser.find_element("css selector", "main")
        assert main.find_elements("css selector", "script, img, iframe, svg") == []
        assert browser.execute_script("return window.gkPwned === undefined") is True
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_build_page_says_where_the_build_ran(db: Database, tmp_path: Path) -> None:
    start = time.time() - 600
    with db.session() as session:
        session.add(
            BuildRecord(
                uuid="b" * 32,
                job="tempest",
                pipeline="check",
                provider="rax",
                region="DFW",
                availability_zone="dfw-2",
                label="devstack-vm",
                node="devstack-vm-rax-1",
                worker="w7",
                image="devstack-vm-rax-20260101T000000-abcdef",
                image_built_at=start - 3 * 3600 - 60,
                dispatched_at=start - 5,
                start_time=start,
                log_url="",
            )
        )
    page = TestClient(make_app(context(db, tmp_path))).get(f"/build/{'b' * 32}").text
    assert '<td id="gk-where">DFW / dfw-2</td>' in page
    assert "devstack-vm-rax-20260101T000000-abcdef (built " in page
    assert "3h 01m old at the start" in page
    assert "<td>w7</td>" in page and "<td>devstack-vm-rax-1</td>" in page
    api = TestClient(make_app(context(db, tmp_path))).get(f"/api/build/{'b' * 32}").json()
    assert (api["region"], api["availability_zone"], api["image_age"]) == ("DFW", "dfw-2", 10860.0)


def test_a_web_of_its_own_serves_the_provider_gauges_from_the_database(
    db: Database, tmp_path: Path
) -> None:
    """``gatekeeper web`` without the app in its process reads the rates itself."""
    fill(db)
    text = TestClient(make_app(context(db, tmp_path))).get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    rates = {
        (s.labels["job"], s.labels["provider"]): s.value
        for s in families["gatekeeper_provider_failure_rate"].samples
    }
    flags = {
        (s.labels["job"], s.labels["provider"]): s.value
        for s in families["gatekeeper_provider_flagged"].samples
    }
    assert rates[("tempest", "west")] == 0.5 and rates[("pep8", "east")] == 0.0
    assert flags[("", "west")] == 1.0 and flags[("", "east")] == 0.0
