"""The pool's pages and Nodepool's list endpoints, over HTTP, on a real
SQLite database filled through the same stores the pool uses."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import LaunchedNode, NodeState
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

#: A node name, label and comment written by someone hostile: markup that
#: would run if a page pasted it in, and a newline and a terminal escape
#: that would forge a line of a text table.
HOSTILE_LABEL = "<img src=x onerror=alert(1)>"
HOSTILE_COMMENT = 'held</td><script>alert("node")</script>\nFORGED | row \x1b[31m'
BUILD = "0123456789abcdef0123456789abcdef"
#: What would run if a page parsed a comment as markup (the CSP stops inline
#: script, not an element the page itself was tricked into making).
RUNS_IF_PARSED = (
    '<script>window.gkPwned = 1</script><img src="/x" onerror="window.gkPwned = 2">'
    "<svg onload=\"document.title='pwned'\"></svg>"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    yield database
    database.dispose()


def site(tmp_path: Path) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "providers": [
                {"name": "local", "driver": "local", "max-servers": 3},
                {"name": "cloud-b", "driver": "local", "max-servers": 5},
            ],
            "labels": [{"name": "ubuntu", "min-ready": 2, "hold-max": 1}],
        }
    ).resolve(tmp_path)


def fill(db: Database) -> None:
    """A READY node, a node a build runs on, an operator's hold with a
    hostile comment, and two images (the newer current)."""
    nodes = NodeStore(db)
    nodes.add("ubuntu-local-1", "ubuntu", "local")
    nodes.set_ready("ubuntu-local-1", LaunchedNode("srv-1", "10.0.0.1", 22, "zuul"))
    nodes.add("ubuntu-b-2", "ubuntu", "cloud-b")
    nodes.set_ready("ubuntu-b-2", LaunchedNode("srv-2", "10.0.0.2", 2222, "zuul"))
    assert nodes.claim("ubuntu", "worker-1", BUILD) is not None
    nodes.add("evil-node", HOSTILE_LABEL, "local", NodeState.READY)
    nodes.hold("evil-node", 3600, HOSTILE_COMMENT)
    images = ImageStore(db)
    old = images.start_build("local", "ubuntu", now=time.time() - 7200)
    images.finish(old.name, "img-old")
    new = images.start_build("local", "ubuntu")
    images.finish(new.name, "img-new")


def client(
    db: Database,
    tmp_path: Path,
    backoff: Mapping[str, float] | None = None,
) -> TestClient:
    ctx = WebContext(
        site=site(tmp_path),
        db=db,
        live=lambda: {"pipelines": []},
        pool_backoff=(lambda: backoff) if backoff is not None else None,
    )
    return TestClient(make_app(ctx))


def test_nodes_page_shows_state_build_and_hold_and_escapes_names(
    db: Database, tmp_path: Path
) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        page = web.get("/nodes")
    assert page.status_code == 200
    html = page.text
    assert "ubuntu-local-1" in html and "10.0.0.2:2222" in html
    # The node a build runs on links to that build's page.
    assert f'<a href="/build/{BUILD}">{BUILD[:12]}</a>' in html
    # The hold: by whom, until when, and why (escaped).
    assert "operator" in html and "UTC" in html
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;node&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_nodes_page_filters_by_label_and_provider(db: Database, tmp_path: Path) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        by_provider = web.get("/nodes", params={"provider": "cloud-b"}).text
        by_label = web.get("/nodes", params={"label": HOSTILE_LABEL}).text
    assert "ubuntu-b-2" in by_provider and "ubuntu-local-1" not in by_provider
    assert "evil-node" in by_label and "ubuntu-b-2" not in by_label


def test_labels_page_counts_by_state_with_min_ready_and_hold_max(
    db: Database, tmp_path: Path
) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        html = web.get("/labels").text
    row = html[html.index('href="/nodes?label=ubuntu"') :].split("</tr>")[0]
    # The cells after the label's own.
    cells = re.findall(r"<td>(.*?)</td>", row)
    # min-ready, hold-max, providers; BUILDING, READY, USED, HOLD, DELETE, DELETING; waiting.
    assert cells == ["2", "1", "any", "0", "1", "1", "0", "0", "0", "0"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html


def test_images_page_marks_the_current_image(db: Database, tmp_path: Path) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        html = web.get("/images").text
    assert html.count("(current)") == 1
    current = html.index("(current)")
    assert html.rindex("img-new", 0, current + 200) > html.index("img-old")


def test_providers_page_shows_capacity_and_the_pool_backoff(db: Database, tmp_path: Path) -> None:
    fill(db)
    with client(db, tmp_path, backoff={"cloud-b": time.time() + 90}) as web:
        html = web.get("/providers").text
    row = html[html.index('href="/nodes?provider=cloud-b"') :].split("</tr>")[0]
    assert "1 / 5" in row and "more</span>" in row
    local = html[html.index('href="/nodes?provider=local"') :].split("</tr>")[0]
    # READY ubuntu-local-1 (claimed: USED) and the held node take room.
    assert "2 / 3" in local and "<td>no</td>" in local
    with client(db, tmp_path) as web:
        assert "unknown here" in web.get("/providers").text


@pytest.mark.parametrize(
    ("accept", "query", "is_json"),
    [
        pytest.param("application/json", {}, True, id="accept-json"),
        pytest.param("text/plain", {}, False, id="accept-text"),
        pytest.param("*/*", {}, False, id="accept-any"),
        pytest.param("text/html,application/json;q=0.9", {}, True, id="browser-asks-json"),
        pytest.param("application/json;q=0.5,text/plain", {}, False, id="text-preferred"),
        pytest.param("text/plain", {"format": "json"}, True, id="format-json"),
    ],
)
def test_node_list_json_or_text_by_accept(
    db: Database, tmp_path: Path, accept: str, query: dict[str, str], is_json: bool
) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        answer = web.get("/node-list", headers={"Accept": accept}, params=query)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    if is_json:
        nodes = {n["hostname"]: n for n in answer.json()}
        # The oldest READY node was claimed for the build.
        assert nodes["ubuntu-local-1"]["state"] == "in-use"
        assert nodes["ubuntu-local-1"]["allocated_to"] == BUILD
        assert nodes["ubuntu-b-2"]["state"] == "ready"
        assert nodes["ubuntu-b-2"]["connection_port"] == 2222
        assert nodes["evil-node"]["label"] == [HOSTILE_LABEL]
        assert nodes["evil-node"]["comment"] == HOSTILE_COMMENT
    else:
        assert answer.headers["content-type"].startswith("text/plain")
        lines = answer.text.splitlines()
        # Header, three nodes, four rules: the hostile newline forged no row.
        assert len(lines) == 3 + 4
        assert "\x1b" not in answer.text and "\\n" in answer.text


def test_node_list_fields_and_one_node(db: Database, tmp_path: Path) -> None:
    fill(db)
    with client(db, tmp_path) as web:
        json_ = web.get("/node-list", params={"fields": "hostname,state", "format": "json"})
        one = web.get("/node-list", params={"node_id": "ubuntu-local-1", "format": "json"})
        text = web.get("/node-list", params={"fields": "hostname,state"})
    assert {tuple(sorted(n)) for n in json_.json()} == {("hostname", "state")}
    assert [n["hostname"] for n in one.json()] == ["ubuntu-local-1"]
    assert text.text.splitlines()[1].split() == ["|", "hostname", "|", "state", "|"]


def test_label_image_and_dib_image_lists(db: Database, tmp_path: Path) -> None:
    fill(db)
    json_ = {"Accept": "application/json"}
    with client(db, tmp_path) as web:
        labels = web.get("/label-list", headers=json_).json()
        images = web.get("/image-list", headers=json_).json()
        dib = web.get("/dib-image-list", headers=json_).json()
        text = web.get("/image-list").text
    assert {entry["label"] for entry in labels} == {"ubuntu", HOSTILE_LABEL}
    assert [(i["external_id"], i["current"]) for i in images] == [
        ("img-old", False),
        ("img-new", True),
    ]
    assert [d["state"] for d in dib] == ["ready", "ready"]
    assert "img-new" in text and text.startswith("+--")


def test_metrics_without_an_app_count_nodes_from_the_database(db: Database, tmp_path: Path) -> None:
    """``gatekeeper web`` on its own: /metrics has what the database knows."""
    fill(db)
    with client(db, tmp_path) as web:
        answer = web.get("/metrics")
    assert answer.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    nodes = {
        (s.labels["state"], s.labels["label"], s.labels["provider"]): s.value
        for s in families["gatekeeper_nodes"].samples
    }
    assert nodes == {
        ("USED", "ubuntu", "local"): 1.0,
        ("READY", "ubuntu", "cloud-b"): 1.0,
        ("HOLD", HOSTILE_LABEL, "local"): 1.0,
    }
    limits = {
        s.labels["provider"]: s.value for s in families["gatekeeper_provider_max_servers"].samples
    }
    assert limits == {"local": 3.0, "cloud-b": 5.0}


def test_a_browser_renders_a_hostile_node_comment_as_text(
    db: Database, tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    """/nodes in Debian's headless Chromium: a node held with a comment (and
    of a label) full of markup shows that markup as text; no element it
    names exists in the DOM and nothing of it ran."""
    import threading

    import uvicorn

    fill(db)
    nodes = NodeStore(db)
    nodes.add("xss-node", "ubuntu", "local", NodeState.READY)
    nodes.hold("xss-node", None, RUNS_IF_PARSED)
    app = make_app(WebContext(site=site(tmp_path), db=db, live=lambda: {"pipelines": []}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        browser.get(f"http://127.0.0.1:{port}/nodes")
        comments = [e.text for e in browser.find_elements("css selector", "td.gk-comment")]
        browser.save_screenshot(str(artifacts / "nodes.png"))
        assert RUNS_IF_PARSED in comments
        assert any("<script>" in c for c in comments)
        main = browser.find_element("css selector", "main")
        assert main.find_elements("css selector", "script, img, iframe, svg") == []
        assert browser.execute_script("return window.gkPwned === undefined") is True
        assert browser.title == "Nodes · gatekeeper"
    finally:
        server.should_exit = True
        thread.join(10)
