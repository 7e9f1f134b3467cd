"""Build history: /builds, /api/builds, the buildset and build pages, over
rows written by the real BuildStore into a migrated database (the shared
``db`` fixture: SQLite, and PostgreSQL when one is configured)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gatekeeper.config.site import GerritConfig, SiteConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

pytestmark = pytest.mark.timeout(60)


def uuid(n: int) -> str:
    return f"{n:07x}" + "f" * 25


def record(
    builds: BuildStore,
    n: int,
    job: str = "gate-nova-python27",
    project: str = "openstack/nova",
    result: str | None = "SUCCESS",
    provider: str = "local",
    label: str = "devstack-vm",
    item: str = "item-1",
) -> str:
    build = uuid(n)
    log_path = f"{n % 100:02d}/{1000 + n}/1/check/{job}/{build[:7]}"
    builds.dispatched(
        build,
        job,
        project,
        1000 + n,
        1,
        "check",
        1000.0 + n,
        item_uuid=item,
        label=label,
        branch="master",
        parameters={"ZUUL_CHANGE": str(1000 + n), "LOG_PATH": log_path},
    )
    builds.started(build, f"node-{n}", provider, "w1", 1010.0 + n, "")
    if result is not None:
        builds.completed(build, result, 1070.0 + n)
    return build


def client(db: Database, tmp_path: Path, web_url: str = "") -> TestClient:
    site = SiteConfig().resolve(tmp_path)
    site.gerrit = GerritConfig.model_validate(
        {"host": "review.example.org", "user": "gk", "key": tmp_path / "key", "web-url": web_url}
    )
    return TestClient(make_app(WebContext(site=site, db=db, live=lambda: {})))


def test_api_builds_newest_first_and_paged(db: Database, tmp_path: Path) -> None:
    builds = BuildStore(db)
    made = [record(builds, n) for n in range(1, 8)]
    with client(db, tmp_path) as web:
        first = web.get("/api/builds?limit=3")
        assert first.headers["access-control-allow-origin"] == "*"
        page1 = first.json()
        assert [b["uuid"] for b in page1] == made[::-1][:3]
        page2 = web.get("/api/builds?limit=3&offset=3").json()
        page3 = web.get("/api/builds?limit=3&offset=6").json()
        assert [b["uuid"] for b in page1 + page2 + page3] == made[::-1]
        one = page1[0]
        assert one["job"] == "gate-nova-python27" and one["label"] == "devstack-vm"
        assert one["branch"] == "master" and one["change"] == 1007 and one["patchset"] == 1
        assert one["duration"] == 60.0 and one["wait"] == 10.0
        assert one["url"].endswith(f"/build/{made[-1]}")
        assert set(one) >= {"node", "provider", "attempt", "result", "pipeline", "log_url"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("job=gate-tempest", [3], id="job"),
        pytest.param("project=openstack/glance", [4], id="project"),
        pytest.param("result=FAILURE", [2], id="result"),
        pytest.param("provider=rax", [5], id="provider"),
        pytest.param("label=bare", [6], id="label"),
        pytest.param("node=node-1", [1], id="node"),
        pytest.param("change=1002", [2], id="change"),
        pytest.param("pipeline=check&result=SUCCESS&provider=local", [6, 4, 3, 1], id="and"),
        pytest.param("branch=stable", [], id="no-match"),
    ],
)
def test_filters(db: Database, tmp_path: Path, query: str, expected: list[int]) -> None:
    builds = BuildStore(db)
    record(builds, 1)
    record(builds, 2, result="FAILURE")
    record(builds, 3, job="gate-tempest")
    record(builds, 4, project="openstack/glance")
    record(builds, 5, provider="rax")
    record(builds, 6, label="bare")
    with client(db, tmp_path) as web:
        found = [b["uuid"] for b in web.get(f"/api/builds?{query}").json()]
        assert found == [uuid(n) for n in expected]
        page = web.get(f"/builds?{query}")
        assert page.status_code == 200
        for n in range(1, 7):
            assert (f"/build/{uuid(n)}" in page.text) == (n in expected)


def test_the_builds_page_keeps_filters_in_its_links(db: Database, tmp_path: Path) -> None:
    builds = BuildStore(db)
    for n in range(1, 6):
        record(builds, n)
    with client(db, tmp_path) as web:
        page = web.get("/builds?project=openstack/nova&limit=2").text
        assert "5 builds; 1 to 2 shown" in page
        assert 'value="openstack/nova"' in page
        assert 'href="/builds?project=openstack%2Fnova&amp;offset=2&amp;limit=2"' in page
        last = web.get("/builds?project=openstack/nova&limit=2&offset=4").text
        assert "older" not in last and "newer" in last


@pytest.mark.parametrize(
    "query", ["change=abc", "limit=x", "offset=-1", "limit=0"], ids=lambda q: q.split("=")[0]
)
def test_bad_queries_are_refused_clearly(db: Database, tmp_path: Path, query: str) -> None:
    with client(db, tmp_path) as web:
        assert web.get(f"/builds?{query}").status_code == 400
        answer = web.get(f"/api/builds?{query}")
        assert answer.status_code == 400 and "error" in answer.json()


def test_buildset_lists_every_build_of_the_item(db: Database, tmp_path: Path) -> None:
    builds = BuildStore(db)
    a = record(builds, 1, item="item-9")
    b = record(builds, 2, job="gate-tempest", item="item-9")
    record(builds, 3, item="other")
    builds.retried(b, 2)
    with client(db, tmp_path) as web:
        page = web.get("/buildset/item-9").text
        assert page.index(f"/build/{a}") < page.index(f"/build/{b}")
        assert f"/build/{uuid(3)}" not in page
        assert web.get("/buildset/nothing").status_code == 404


def test_build_page_shows_facts_parameters_console_and_tree(db: Database, tmp_path: Path) -> None:
    builds = BuildStore(db)
    build = record(builds, 7, result="FAILURE")
    site = SiteConfig().resolve(tmp_path)
    assert site.log_root is not None
    logs = site.log_root / f"07/1007/1/check/gate-nova-python27/{build[:7]}"
    (logs / "logs").mkdir(parents=True)
    (logs / "console.txt").write_text(
        "line one\nERROR: <script>alert(1)</script>\nlast line\n", encoding="utf-8"
    )
    (logs / "logs" / "syslog.txt").write_text("x\n")
    with client(db, tmp_path, web_url="https://review.example.org/") as web:
        page = web.get(f"/build/{build}").text
        assert 'href="https://review.example.org/#/c/1007/1"' in page
        for fact in ("node-7", "local", "devstack-vm", "check", "1m 00s", "10s", "FAILURE"):
            assert fact in page
        assert "<th>ZUUL_CHANGE</th><td>1007</td>" in page
        assert '<span class="gk-line sev-error" id="L2">' in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>alert" not in page
        assert f'href="/logs/07/1007/1/check/gate-nova-python27/{build[:7]}/console.txt"' in page
        assert "logs/syslog.txt?view=html" in page
        assert web.get("/build/nope").status_code == 404
        assert web.get("/api/build/nope").status_code == 404
        api = web.get(f"/api/build/{build}").json()
        assert api["parameters"]["ZUUL_CHANGE"] == "1007"


def test_log_url_defaults_to_the_web(tmp_path: Path) -> None:
    site = SiteConfig.model_validate({"web": {"url": "https://ci.example.org/"}}).resolve(tmp_path)
    assert site.log_url == "https://ci.example.org/logs/"
    assert SiteConfig().resolve(tmp_path).log_url == "http://127.0.0.1:8080/logs/"
    explicit = SiteConfig.model_validate({"log-url": "https://logs.example.org"})
    assert explicit.resolve(tmp_path).log_url == "https://logs.example.org/"
