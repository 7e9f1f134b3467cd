"""Holding a node from the web with a developer's SSH key, on a node the
pool launched with an ``openstack`` provider: the cloud is the in-process
fake (no real cloud exists here), its servers a real sshd, the developer
the real OpenSSH client. The same fixtures as ``gatekeeper nodes hold
--ssh-key``'s tests: the web runs the same code (:mod:`gatekeeper.pool.holds`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gatekeeper.config.loader import load_site
from gatekeeper.db.audit import AuditLog
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import Node
from gatekeeper.dispatch.tokens import ensure_secret, mint
from gatekeeper.model.node import NodeState
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from tests.fixtures.sshd import SSHServer
from tests.unit.test_pool_cli import _db, _keygen, _ssh, cloud_node, cloud_site  # noqa: F401

ORIGIN = {"Origin": "http://testserver"}


@pytest.mark.sshd
def test_hold_with_a_key_from_the_web_lets_the_developer_in_and_is_audited(
    cloud_site: Path,  # noqa: F811
    cloud_node: Node,  # noqa: F811
    sshd_home: SSHServer,
    tmp_path: Path,
) -> None:
    site = load_site(cloud_site, cloud_site.parent)
    db = _db(cloud_site)
    assert site.admin.secret_file is not None
    secret = ensure_secret(site.admin.secret_file)
    ctx = WebContext(site=site, db=db, live=lambda: {}, secret=secret)
    client = TestClient(make_app(ctx))
    nonce = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert nonce
    token = mint(secret, "grace", "operator", 600)
    signed = client.post("/login", data={"csrf": nonce.group(1), "token": token}, headers=ORIGIN)
    csrf = re.search(r'<meta name="gk-csrf" content="([0-9a-f]+)">', signed.text)
    assert csrf, signed.text

    dev_pub = _keygen(tmp_path / "dev_key", "dev@example")
    known_hosts = tmp_path / "dev_known_hosts"
    known_hosts.write_text(cloud_node.host_keys + "\n")
    form = {
        "csrf": csrf.group(1),
        "node": str(cloud_node.id),
        "reason": "bug 42",
        "hours": "2",
        "ssh_key": dev_pub.read_text(),
    }
    held = client.post("/action/hold", data=form, headers=ORIGIN)
    assert f"ssh {sshd_home.username}@127.0.0.1 -p {sshd_home.port}" in held.text, held.text
    assert NodeStore(db).find(str(cloud_node.id)).state == NodeState.HOLD
    after = _ssh(cloud_node, tmp_path / "dev_key", known_hosts, "echo in")
    assert (after.returncode, after.stdout) == (0, "in\n"), after
    (row,) = AuditLog(db).entries("hold", "ok")
    assert (row.actor, row.role) == ("grace", "operator")
    assert '"ssh_key": true' in row.target and "bug 42" in row.target

    released = client.post(
        "/action/release", data={"csrf": csrf.group(1), "node": cloud_node.name}, headers=ORIGIN
    )
    assert "released: DELETE" in released.text
    assert NodeStore(db).find(str(cloud_node.id)).state == NodeState.DELETE
    (row,) = AuditLog(db).entries("release", "ok")
    assert row.actor == "grace"
    db.dispose()
