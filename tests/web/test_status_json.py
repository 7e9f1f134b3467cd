"""``/status.json`` against a running sandbox: Zuul v2.5's shape at every
level, the per-change endpoint, and the caching headers.

The daemon runs against the Gerrit simulator with its web on a free port;
jobs wait on a flag file, so changes stay in check and in the gate while
the status is read.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from gatekeeper import __version__
from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.dispatch import admin
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.errors import ConfigError
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from gatekeeper.web.server import WebServer
from gatekeeper.web.status import StatusCache
from gatekeeper.web.status import routes as status_routes
from tests.fixtures.pipelines import GATE_PIPELINE
from tests.functional.test_gate import UNCONFINED  # jobs wait on a flag outside their node

pytestmark = pytest.mark.timeout(120)

LAYOUT = (
    """
pipelines:
  - name: check
    description: Newly uploaded patchsets.
    manager: independent
    trigger:
      gerrit:
        - event: comment-added
          comment: (?im)^check$
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
"""
    + GATE_PIPELINE
    + """  - name: post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^(?!refs/).*$
jobs:
  - name: held
    node: devstack-vm
    run: "while [ ! -e {flag} ]; do sleep 0.05; done"
  - name: advisory
    node: devstack-vm
    voting: false
    run: "while [ ! -e {flag} ]; do sleep 0.05; done"
projects:
  - name: openstack/nova
    check: [advisory]
    gate: [held]
"""
)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One change in check only; two approved ones in the gate, the second
    tested on top of the first; every job held."""
    root = tmp_path_factory.mktemp("status")
    layout = root / "layout.yaml"
    layout.write_text(LAYOUT.replace("{flag}", str(root / "release")))
    sandbox = Sandbox(
        root / "sandbox", layout, worker_count=8, extra_site={"providers": [UNCONFINED]}
    )
    sandbox.start()
    try:
        checked = sandbox.push_change("openstack/nova", "Only checked", {"a.txt": "a\n"})
        sandbox.comment(*checked, "check")
        first = sandbox.push_change("openstack/nova", "First approved", {"b.txt": "b\n"})
        second = sandbox.push_change("openstack/nova", "Second approved", {"c.txt": "c\n"})
        sandbox.approve(*first)
        sandbox.approve(*second)
        sandbox.wait_for(lambda: _gate_running(sandbox), 60, "the gate's jobs to start")
        yield sandbox
    finally:
        (root / "release").touch()
        sandbox.stop()


def _status(box: Sandbox) -> dict[str, Any]:
    assert box.app is not None
    result: dict[str, Any] = httpx2.get(box.app.web_url + "status.json", timeout=10).json()
    return result


def _gate_running(box: Sandbox) -> bool:
    """Both gate items have their voting job started, and check has its three."""
    status = _status(box)
    items = {p["name"]: _items(p) for p in status["pipelines"]}
    started = [
        j for i in items["gate"] for j in i["jobs"] if j["name"] == "held" and j["start_time"]
    ]
    checking = [j for i in items["check"] for j in i["jobs"] if j["start_time"]]
    return len(started) == 2 and len(checking) == 1


def _items(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for q in pipeline["change_queues"] for chain in q["heads"] for i in chain]


NUMBER = (int, float)


def _check_job(job: dict[str, Any], pipeline: str) -> None:
    assert set(job) >= {
        "name", "url", "report_url", "result", "voting", "elapsed_time", "remaining_time",
        "uuid", "launch_time", "start_time", "end_time", "estimated_time", "pipeline",
        "canceled", "retry", "number", "node_labels", "node_name", "worker",
    }  # fmt: skip
    assert isinstance(job["name"], str) and isinstance(job["voting"], bool)
    if job["uuid"] is None:  # not launched: every build field null
        assert all(job[k] is None for k in ("url", "result", "launch_time", "start_time"))
        return
    assert isinstance(job["uuid"], str) and job["pipeline"] == pipeline
    assert job["url"].endswith("/build/" + job["uuid"]) and isinstance(job["report_url"], str)
    assert isinstance(job["launch_time"], NUMBER) and isinstance(job["canceled"], bool)
    # Seconds since the epoch (not ms): within a minute of now.
    assert abs(job["launch_time"] - time.time()) < 600
    if job["start_time"] is not None:
        assert abs(job["start_time"] - time.time()) < 600
        assert job["start_time"] >= job["launch_time"] - 1
        # Milliseconds: running for less than ten minutes, so under 600000.
        assert isinstance(job["elapsed_time"], int) and 0 <= job["elapsed_time"] < 600_000
    assert job["result"] is None or isinstance(job["result"], str)
    assert job["estimated_time"] is None or isinstance(job["estimated_time"], NUMBER)
    assert isinstance(job["node_labels"], list) and job["node_labels"] == ["devstack-vm"]
    assert isinstance(job["worker"], dict) and set(job["worker"]) >= {"name", "hostname"}


def _check_item(item: dict[str, Any], pipeline: str) -> None:
    assert set(item) >= {
        "id", "url", "project", "owner", "enqueue_time", "remaining_time", "active", "live",
        "item_ahead", "items_behind", "failing_reasons", "zuul_ref", "jobs",
    }  # fmt: skip
    number, patchset = item["id"].split(",")
    assert number.isdigit() and patchset.isdigit()
    assert item["project"] == "openstack/nova" and isinstance(item["url"], str)
    assert item["owner"] is None or isinstance(item["owner"]["username"], str)
    # Milliseconds since the epoch.
    assert isinstance(item["enqueue_time"], int)
    assert abs(item["enqueue_time"] / 1000 - time.time()) < 600
    assert item["remaining_time"] is None or isinstance(item["remaining_time"], int)
    assert item["active"] is True and item["live"] is True
    assert isinstance(item["items_behind"], list) and isinstance(item["failing_reasons"], list)
    assert item["failing_reasons"] == []
    for job in item["jobs"]:
        _check_job(job, pipeline)


def test_status_json_has_zuul_v25_shape(box: Sandbox) -> None:
    status = _status(box)
    assert status["zuul_version"] == __version__
    assert isinstance(status["trigger_event_queue"]["length"], int)
    assert isinstance(status["result_event_queue"]["length"], int)
    assert abs(status["last_reconfigured"] / 1000 - time.time()) < 600  # ms
    # Every pipeline, in layout order, the empty one too.
    assert [p["name"] for p in status["pipelines"]] == ["check", "gate", "post"]
    check, gate, post = status["pipelines"]
    assert gate["description"].startswith("Approved changes")
    assert post["change_queues"] == []
    for pipeline in status["pipelines"]:
        for queue in pipeline["change_queues"]:
            assert isinstance(queue["name"], str) and isinstance(queue["window"], int)
            for chain in queue["heads"]:
                assert isinstance(chain, list) and chain
                for item in chain:
                    _check_item(item, pipeline["name"])
    # Check: one queue per item, each its own chain; its job does not vote.
    [[[checked]]] = [q["heads"] for q in check["change_queues"]]
    assert [(j["name"], j["voting"]) for j in checked["jobs"]] == [("advisory", False)]
    # The gate: one chain, the second change on top of the first.
    [queue] = gate["change_queues"]
    [[first, second]] = queue["heads"]
    assert first["item_ahead"] is None and first["items_behind"] == [second["id"]]
    assert second["item_ahead"] == first["id"] and second["items_behind"] == []
    assert [(j["name"], j["voting"]) for j in second["jobs"]] == [("held", True)]
    # Nothing has finished yet: no remaining time is known without an estimate.
    assert first["remaining_time"] is None and second["remaining_time"] is None


def test_change_endpoint_lists_the_change_in_every_pipeline(box: Sandbox) -> None:
    assert box.app is not None
    status = _status(box)
    [_, gate, _] = status["pipelines"]
    first = gate["change_queues"][0]["heads"][0][0]
    found = httpx2.get(box.app.web_url + f"status/change/{first['id']}", timeout=10)
    assert found.status_code == 200
    assert found.headers["access-control-allow-origin"] == "*"
    [item] = found.json()
    assert item["id"] == first["id"] and item["jobs"][0]["pipeline"] == "gate"
    [check, _, _] = status["pipelines"]
    checked = check["change_queues"][0]["heads"][0][0]
    [item] = httpx2.get(box.app.web_url + f"status/change/{checked['id']}", timeout=10).json()
    assert item["jobs"][0]["pipeline"] == "check"
    missing = httpx2.get(box.app.web_url + "status/change/99999,1", timeout=10)
    assert missing.status_code == 404


def test_status_headers_and_conditional_get(box: Sandbox) -> None:
    assert box.app is not None
    url = box.app.web_url + "status.json"
    with httpx2.Client(timeout=10) as client:
        first = client.get(url)
        assert first.status_code == 200
        headers = first.headers
        assert headers["access-control-allow-origin"] == "*"
        assert headers["cache-control"] == "public, max-age=1"
        assert headers["last-modified"].endswith("GMT") and headers["expires"].endswith("GMT")
        assert headers["content-type"] == "application/json"
        etag = headers["etag"]
        again = client.get(url, headers={"If-None-Match": etag})
        # Either the same status (304, no body) or a newer one with a new tag.
        if again.status_code == 304:
            assert again.content == b"" and again.headers["etag"] == etag
        else:
            assert again.status_code == 200 and again.headers["etag"] != etag
        stale = client.get(url, headers={"If-None-Match": '"not-this-one"'})
        assert stale.status_code == 200 and stale.json()["zuul_version"] == __version__


def _client(box: Sandbox, asked: list[int]) -> TestClient:
    """The web's app in-process (TestClient), asking the sandbox's scheduler,
    whose status is kept for an hour: every request sees the same one."""
    assert box.app is not None
    live = box.app.live_status

    def counted() -> Mapping[str, object]:
        asked.append(1)
        return live()

    ctx = WebContext(site=box.site, db=box.app.db, live=counted)
    app = make_app(ctx)
    # The same routes over a cache that does not expire during the test.
    app.router.routes[:0] = status_routes(ctx, StatusCache(ctx, expiry=3600))
    return TestClient(app)


def test_conditional_get_and_cors_through_the_app(box: Sandbox) -> None:
    with _client(box, []) as web:
        first = web.get("/status.json")
        assert first.status_code == 200
        assert first.headers["access-control-allow-origin"] == "*"
        assert first.headers["cache-control"] == "public, max-age=3600"
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        # A client that has the current one is told so, without a body.
        again = web.get("/status.json", headers={"If-None-Match": f'W/{etag}, "other"'})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["access-control-allow-origin"] == "*"
        since = web.get("/status.json", headers={"If-Modified-Since": modified})
        assert since.status_code == 304
        # If-None-Match wins over If-Modified-Since (RFC 9110).
        both = web.get(
            "/status.json", headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
        )
        assert both.status_code == 200 and both.json()["pipelines"]
        assert web.get("/status").json()["zuul_version"] == __version__
        assert web.get("/status/change/99999,1").status_code == 404
        assert web.get("/status/change/not-a-change").status_code == 404


def test_status_is_built_once_per_expiry_however_many_ask(box: Sandbox) -> None:
    """Fifty requests within one expiry ask the scheduler once, and every
    one gets the same ETag."""
    asked: list[int] = []
    with _client(box, asked) as web:
        tags = {web.get("/status.json").headers["etag"] for _ in range(50)}
        items = web.get(f"/status/change/{_first_gate_id(web.get('/status.json').json())}")
    assert len(asked) == 1 and len(tags) == 1
    assert items.status_code == 200


def _first_gate_id(status: dict[str, Any]) -> str:
    [gate] = [p for p in status["pipelines"] if p["name"] == "gate"]
    return str(gate["change_queues"][0]["heads"][0][0]["id"])


def test_a_web_port_in_use_is_a_clear_error(box: Sandbox) -> None:
    assert box.app is not None and box.app.web is not None
    taken = box.app.web.port
    server = WebServer(
        make_app(WebContext(box.site, box.app.db, box.app.live_status)), "127.0.0.1", taken
    )
    with pytest.raises(ConfigError, match=rf"web.listen: 127.0.0.1:{taken} is in use"):
        server.start()


def test_gatekeeper_web_serves_a_split_site(box: Sandbox, tmp_path: Path) -> None:
    """``gatekeeper web`` as its own process: the live state comes from the
    running scheduler over Gearman, in the same shape."""
    assert box.app is not None and box.app.gearman is not None
    gearman = box.app.gearman
    site = box.site_file(
        tmp_path / "site.yaml",
        f"database: {box.site.database}\n"
        f"gearman:\n  listen: {{host: {gearman.host}, port: {gearman.port}}}\n",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", "web", "-c", str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("web: http://127.0.0.1:"), (
            process.stderr.read() if process.stderr else ""
        )
        url = line.split(" ", 1)[1].strip()
        status = httpx2.get(url + "status.json", timeout=30).json()
        assert _first_gate_id(status) == _first_gate_id(_status(box))
        assert [p["name"] for p in status["pipelines"]] == ["check", "gate", "post"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors


def test_status_without_a_scheduler_is_a_503_not_a_crash(tmp_path: Path) -> None:
    """A split site's web whose Gearman has no scheduler registered: a clear
    503 (and CORS), the page itself still served."""
    gearman = EmbeddedGearman("127.0.0.1", 0)
    db = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    db.migrate()
    try:

        def live() -> Mapping[str, object]:
            answer = admin.call([(gearman.host, gearman.port)], "status", {}, timeout=2)
            assert isinstance(answer, dict)
            return answer

        site = SiteConfig().resolve(tmp_path)
        with TestClient(make_app(WebContext(site=site, db=db, live=live))) as web:
            down = web.get("/status.json")
            assert down.status_code == 503
            assert down.headers["access-control-allow-origin"] == "*"
            assert "the scheduler could not be asked" in down.json()["error"]
            assert web.get("/status/change/1,1").status_code == 503
            assert web.get("/").status_code == 200
    finally:
        db.dispose()
        gearman.stop()
