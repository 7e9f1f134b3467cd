"""``/insights`` and ``/insights/flaky`` over HTTP, on build rows written to a
real SQLite database the way the scheduler writes them; the pages as the
sandbox serves them, in Chromium, are in tests/functional/test_flaky_jobs.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.web import insights_flaky
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from tests.fixtures.build_history import History, change

pytestmark = pytest.mark.timeout(30)

#: A job name that would run if a page pasted it in as markup.
HOSTILE_JOB = '<script>alert("job")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def web(sqlite_db: Database, tmp_path: Path) -> Iterator[tuple[TestClient, History]]:
    ctx = WebContext(
        site=SiteConfig.model_validate({}).resolve(tmp_path),
        db=sqlite_db,
        live=lambda: {"pipelines": []},
        base_url="http://gk.example.org/",
    )
    with TestClient(make_app(ctx)) as client:
        yield client, History(sqlite_db, now=time.time())


def test_the_index_links_every_insights_page_and_the_nav_links_the_index(
    web: tuple[TestClient, History],
) -> None:
    client, _ = web
    page = client.get("/insights")
    assert page.status_code == 200
    for href in ("/insights/providers", "/insights/flaky", "/insights/failures"):
        assert f'<a href="{href}">' in page.text
    # Every page's nav leads to the index.
    assert '<a href="/insights" id="gk-nav-insights">Insights</a>' in client.get("/builds").text


def test_the_flaky_page_shows_rates_and_incidents_linked_to_builds_and_logs(
    web: tuple[TestClient, History],
) -> None:
    client, history = web
    failed = history.build("FAILURE", change(11), provider="rax-dfw")
    passed = history.build("SUCCESS", change(11), provider="ovh-gra1")
    history.build("SUCCESS", change(12), job="pep8")
    page = client.get("/insights/flaky")
    assert page.status_code == 200
    html = page.text
    # Each build links to its page, says where it ran, and links its logs.
    assert f'href="/build/{failed}">FAILURE {failed[:7]}</a> on rax-dfw (' in html
    assert f'href="/build/{passed}">SUCCESS {passed[:7]}</a> on ovh-gra1 (' in html
    assert f'href="/logs/11/11/1/check/tempest/{passed[:7]}/">logs</a>' in html
    assert '<td class="gk-rate">50%</td>' in html and '<td class="gk-rate">0%</td>' in html
    # One job: only its row.
    only = client.get("/insights/flaky", params={"job": "pep8"}).text
    assert "pep8" in only and "tempest" not in only and "No flaky incidents" in only


def test_the_json_twin_says_the_same(web: tuple[TestClient, History]) -> None:
    client, history = web
    failed = history.build("TIMED_OUT", change(21))
    passed = history.build("SUCCESS", change(21), provider="rax")
    # Where the cloud said the passing build ran (recorded at its start).
    with history.store.db.session() as session:
        session.execute(
            update(BuildRecord)
            .where(BuildRecord.uuid == passed)
            .values(region="DFW", availability_zone="az2")
        )
    body = client.get("/api/insights/flaky", params={"days": "2"}).json()
    assert body["days"] == 2 and body["truncated"] is False
    [job] = body["jobs"]
    assert (job["job"], job["runs"], job["flaky_failures"], job["rate"]) == ("tempest", 2, 1, 0.5)
    [incident] = body["incidents"]
    assert (incident["change"], incident["patchset"], incident["pipeline"]) == (21, 1, "check")
    assert incident["changes"] == "openstack/nova:master:refs/changes/21/21/1"
    assert [r["uuid"] for r in incident["failed"]] == [failed]
    assert incident["passed"]["url"] == f"http://gk.example.org/build/{passed}"
    where = [incident["passed"][k] for k in ("provider", "region", "availability_zone")]
    assert where == ["rax", "DFW", "az2"]
    assert f"SUCCESS {passed[:7]}</a> on rax/DFW/az2 (" in client.get("/insights/flaky").text
    assert incident["passed"]["logs"].startswith("http://gk.example.org/logs/21/21/1/check/")


@pytest.mark.parametrize(
    "days", ["0", "-1", "nan", "inf", "many", "1000"], ids=lambda d: f"days={d}"
)
def test_a_window_that_cannot_be_used_is_refused_clearly(
    web: tuple[TestClient, History], days: str
) -> None:
    client, _ = web
    page = client.get("/insights/flaky", params={"days": days})
    assert page.status_code == 400 and "days must be" in page.text
    api = client.get("/api/insights/flaky", params={"days": days})
    assert api.status_code == 400 and "days must be" in api.json()["error"]


def test_names_from_outside_are_escaped(web: tuple[TestClient, History]) -> None:
    client, history = web
    history.build("FAILURE", change(31), job=HOSTILE_JOB)
    history.build("SUCCESS", change(31), job=HOSTILE_JOB)
    html = client.get("/insights/flaky").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;job&#34;)&lt;/script&gt;" in html
    # The job's link keeps its name inside the query string, encoded.
    assert "/insights/flaky?job=%3Cscript%3E" in html


def test_the_page_lists_the_newest_incidents_and_says_how_many_more(
    web: tuple[TestClient, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, history = web
    monkeypatch.setattr(insights_flaky, "PAGE_INCIDENTS", 1)
    for number in (41, 42):
        history.build("FAILURE", change(number))
        history.build("SUCCESS", change(number))
    html = client.get("/insights/flaky").text
    assert "42,1" in html and "41,1" not in html
    assert "1 older incidents not shown" in html
    assert len(client.get("/api/insights/flaky").json()["incidents"]) == 2
