"""Operator actions from the web against a running sandbox (its real
scheduler, admin worker, audit log and pool): read-only without a token;
sign-in with an operator token; enqueue, dequeue and promote through the
admin worker, audited under the token's user; CSRF, another Origin and an
expired token refused; holding and releasing a node, audited; a hostile
reason shown as text. The HTTP tests drive the app the daemon serves
(Starlette's TestClient on ``app.web.app``, the same routes and context)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait
from starlette.testclient import TestClient

from gatekeeper.db.audit import AuditLog
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.admin import call
from gatekeeper.dispatch.tokens import mint, read_secret
from gatekeeper.model.node import NodeState
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.web.actions import COOKIE
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from tests.web.held_gate import held_gate_box  # noqa: F401 - the box fixture

pytestmark = pytest.mark.timeout(120)

HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=1>"


def _client(box: Sandbox) -> TestClient:
    assert box.app is not None and box.app.web is not None
    return TestClient(box.app.web.app, base_url=box.app.web_url.rstrip("/"))


def _origin(box: Sandbox) -> dict[str, str]:
    assert box.app is not None
    return {"Origin": box.app.web_url.rstrip("/")}


def _gate(box: Sandbox) -> list[str]:
    """The changes in the gate, head first, as the scheduler has them."""
    assert box.app is not None
    status = box.app.live_status()
    (gate,) = [p for p in status["pipelines"] if p["name"] == "gate"]
    return [i["change"] for q in gate["queues"] for i in q["items"]]


def _two_in_gate(box: Sandbox) -> list[str]:
    keys = []
    for name in ("First", "Second"):
        number, patchset = box.push_change("openstack/nova", name, {f"{name}.txt": "x\n"})
        box.approve(number, patchset)
        keys.append(f"{number},{patchset}")
    box.wait_for(lambda: _gate(box) == keys, 60, "both changes in the gate")
    return keys


def _sign_in(client: TestClient, box: Sandbox, token: str) -> str:
    """Sign in through /login as a browser would; the session's CSRF token."""
    page = client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce, page.text
    done = client.post(
        "/login", data={"csrf": nonce.group(1), "token": token, "next": "/"}, headers=_origin(box)
    )
    assert done.status_code == 200 and "signed in as" in done.text, done.text
    csrf = re.search(r'<meta name="gk-csrf" content="([0-9a-f]+)">', done.text)
    assert csrf, done.text
    return csrf.group(1)


def _ok_rows(box: Sandbox, action: str) -> list[Any]:
    assert box.app is not None
    return AuditLog(box.app.db).entries(action, "ok")


def test_without_a_token_the_web_is_read_only(box: Sandbox) -> None:
    keys = _two_in_gate(box)
    client = _client(box)
    page = client.get("/")
    assert page.status_code == 200
    assert 'href="/login"' in page.text
    assert "gk-csrf" not in page.text and "/action/" not in page.text
    nodes = client.get("/nodes")
    assert "/action/" not in nodes.text
    form = {"pipeline": "gate", "project": "openstack/nova", "change": keys[0], "csrf": "x"}
    for action in ("dequeue", "promote", "enqueue"):
        refused = client.post(f"/action/{action}", data=form, headers=_origin(box))
        assert refused.status_code == 401, refused.text
    # A cookie that is not a token this site signed is no session either.
    client.cookies.set(COOKIE, "eyJhbGciOiJub25lIn0.e30.")
    refused = client.post("/action/dequeue", data=form, headers=_origin(box))
    assert refused.status_code == 401
    assert _gate(box) == keys
    assert _ok_rows(box, "dequeue") == [] and _ok_rows(box, "promote") == []


def test_an_operator_dequeues_promotes_and_enqueues_audited_by_name(box: Sandbox) -> None:
    first, second = _two_in_gate(box)
    client = _client(box)
    csrf = _sign_in(client, box, box.operator_token("carol", role="operator"))
    page = client.get("/")
    assert "carol (operator)" in page.text and 'action="/action/enqueue"' in page.text

    base = {"pipeline": "gate", "project": "openstack/nova", "csrf": csrf, "next": "/"}
    # Refused, and nothing done: no CSRF token, a wrong one, another origin, none.
    no_csrf = {k: v for k, v in base.items() if k != "csrf"}
    assert (
        client.post(
            "/action/dequeue", data={**no_csrf, "change": first}, headers=_origin(box)
        ).status_code
        == 403
    )
    wrong = {**base, "csrf": "0" * 64, "change": first}
    assert client.post("/action/dequeue", data=wrong, headers=_origin(box)).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert (
        client.post("/action/dequeue", data={**base, "change": first}, headers=evil).status_code
        == 403
    )
    referer = {"Referer": "http://evil.example/page"}
    assert (
        client.post("/action/dequeue", data={**base, "change": first}, headers=referer).status_code
        == 403
    )
    assert client.post("/action/dequeue", data={**base, "change": first}).status_code == 403
    assert _gate(box) == [first, second]
    assert _ok_rows(box, "dequeue") == []

    promoted = client.post("/action/promote", data={**base, "change": second}, headers=_origin(box))
    assert promoted.status_code == 200 and f"promote {second}" in promoted.text
    box.wait_for(lambda: _gate(box)[:1] == [second], 30, "the second change at the head")
    (row,) = _ok_rows(box, "promote")
    assert (row.actor, row.role) == ("carol", "operator") and second in row.target

    dequeued = client.post("/action/dequeue", data={**base, "change": first}, headers=_origin(box))
    assert dequeued.status_code == 200, dequeued.text
    box.wait_for(lambda: first not in _gate(box), 30, "the first change gone")
    (row,) = _ok_rows(box, "dequeue")
    assert (row.actor, row.role) == ("carol", "operator") and first in row.target

    enqueued = client.post("/action/enqueue", data={**base, "change": first}, headers=_origin(box))
    assert enqueued.status_code == 200, enqueued.text
    box.wait_for(lambda: first in _gate(box), 30, "the first change back in the gate")
    (row,) = _ok_rows(box, "enqueue")
    assert row.actor == "carol"
    # Signing out ends the session: the same form is refused.
    out = client.post("/logout", data={"csrf": csrf}, headers=_origin(box))
    assert out.status_code == 200 and "signed out" in out.text
    assert (
        client.post(
            "/action/dequeue", data={**base, "change": first}, headers=_origin(box)
        ).status_code
        == 401
    )


def test_an_expired_token_is_refused(box: Sandbox) -> None:
    keys = _two_in_gate(box)
    assert box.site.admin.secret_file is not None
    secret = read_secret(box.site.admin.secret_file)
    # Expired an hour ago: well beyond the leeway for clock differences.
    old = mint(secret, "dave", "operator", 60, now=time.time() - 3600)
    client = _client(box)
    page = client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce
    login = client.post("/login", data={"csrf": nonce.group(1), "token": old}, headers=_origin(box))
    assert login.status_code == 401 and "expired" in login.text
    assert COOKIE not in client.cookies
    # The cookie set by hand (as one kept past its time would be): no session.
    client.cookies.set(COOKIE, old)
    assert "gk-csrf" not in client.get("/").text
    stale = {"pipeline": "gate", "project": "openstack/nova", "change": keys[0]}
    refused = client.post("/action/dequeue", data=stale, headers=_origin(box))
    assert refused.status_code == 401
    assert _gate(box) == keys


def test_hold_and_release_a_node_audited_with_a_hostile_reason_shown_as_text(
    box: Sandbox,
) -> None:
    assert box.app is not None
    store = NodeStore(box.app.db)
    box.wait_for(lambda: any(n.state == NodeState.READY for n in store.list()), 60, "a ready node")
    node = next(n for n in store.list() if n.state == NodeState.READY)
    client = _client(box)
    form = {"node": str(node.id), "reason": HOSTILE, "hours": "0", "next": "/nodes"}
    assert client.post("/action/hold", data=form, headers=_origin(box)).status_code == 401
    assert store.find(str(node.id)).state == NodeState.READY

    csrf = _sign_in(client, box, box.operator_token("erin", role="operator"))
    held = client.post("/action/hold", data={**form, "csrf": csrf}, headers=_origin(box))
    assert (
        held.status_code == 200 and f"node {node.id} ({node.name}) held until released" in held.text
    )
    assert store.find(str(node.id)).state == NodeState.HOLD
    # The reason is text on the page: escaped, never markup.
    assert HOSTILE not in held.text and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in held.text
    (row,) = _ok_rows(box, "hold")
    assert (row.actor, row.role) == ("erin", "operator") and f'"node": "{node.id}"' in row.target

    # A key this driver cannot take: refused, said so, audited as an error.
    keyed = {**form, "csrf": csrf, "reason": "debug", "ssh_key": "ssh-ed25519 AAAA dev@example"}
    answer = client.post("/action/hold", data=keyed, headers=_origin(box))
    assert "take no SSH keys" in answer.text
    assert [r.detail for r in AuditLog(box.app.db).entries("hold", "error")] != []

    released = client.post(
        "/action/release", data={"node": str(node.id), "csrf": csrf}, headers=_origin(box)
    )
    assert released.status_code == 200 and "released: DELETE" in released.text
    assert store.find(str(node.id)).state in (NodeState.DELETE, NodeState.DELETING) or (
        store.get(node.name) is None
    )
    (row,) = _ok_rows(box, "release")
    assert row.actor == "erin"


def _wait(browser: Any, what: str, condition: Any, timeout: float = 60) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=what)


def test_sign_in_and_dequeue_from_the_status_page_in_a_browser(
    box: Sandbox, browser: Any, artifacts: Path
) -> None:
    assert box.app is not None
    first, second = _two_in_gate(box)
    browser.get(box.app.web_url)
    _wait(browser, "the changes drawn", lambda b: b.find_elements("css selector", ".gk-item"))
    # Read-only: no action buttons before signing in.
    assert browser.find_elements("css selector", ".gk-item-actions") == []
    browser.find_element("id", "gk-signin").click()
    browser.find_element("id", "gk-token").send_keys(box.operator_token("frank", "operator"))
    browser.find_element("id", "gk-login-submit").click()
    _wait(browser, "signed in", lambda b: b.find_elements("id", "gk-operator"))
    assert browser.find_element("id", "gk-operator").text == "frank (operator)"
    item = _wait(
        browser,
        "the first change with its buttons",
        lambda b: b.find_elements(
            "css selector", f".gk-item[data-change='{first}'] .gk-action-dequeue"
        ),
    )[0]
    browser.save_screenshot(str(artifacts / "signed-in.png"))
    item.click()
    _wait(browser, "the page after the action", staleness_of(item))
    flash = _wait(browser, "the flash message", lambda b: b.find_elements("id", "gk-flash"))[0]
    assert f"dequeue {first}" in flash.text
    _wait(
        browser,
        "only the second change left",
        lambda b: (
            [e.get_attribute("data-change") for e in b.find_elements("css selector", ".gk-item")]
            == [second]
        ),
    )
    browser.save_screenshot(str(artifacts / "dequeued.png"))
    assert first not in _gate(box)
    (row,) = _ok_rows(box, "dequeue")
    assert row.actor == "frank"
    errors = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert errors == []


def test_a_split_web_acts_over_gearman_with_the_users_token(box: Sandbox) -> None:
    """A web apart from the scheduler (as ``gatekeeper web`` builds it):
    its actions are operator requests over the site's Gearman servers,
    checked and audited by the scheduler under the signed-in user."""
    assert box.app is not None and box.site.admin.secret_file is not None
    first, second = _two_in_gate(box)
    servers = box.app.gearman_servers

    def operate(function: str, args: Mapping[str, object], token: str) -> object:
        return call(servers, function, args, timeout=30, token=token, tls=box.operator_tls())

    ctx = WebContext(
        site=box.site,
        db=box.app.db,
        live=box.app.live_status,
        secret=read_secret(box.site.admin.secret_file),
        operate=operate,
    )
    client = TestClient(make_app(ctx))
    origin = {"Origin": "http://testserver"}
    nonce = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert nonce
    token = box.operator_token("heidi", role="operator")
    signed = client.post("/login", data={"csrf": nonce.group(1), "token": token}, headers=origin)
    csrf = re.search(r'<meta name="gk-csrf" content="([0-9a-f]+)">', signed.text)
    assert csrf, signed.text
    form = {"csrf": csrf.group(1), "pipeline": "gate", "project": "openstack/nova"}
    done = client.post("/action/dequeue", data={**form, "change": second}, headers=origin)
    assert f"dequeue {second}" in done.text, done.text
    box.wait_for(lambda: _gate(box) == [first], 30, "the second change gone")
    (row,) = _ok_rows(box, "dequeue")
    assert (row.actor, row.role) == ("heidi", "operator")
