"""A static host (a real sshd on 127.0.0.1) through its whole life in the pool."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig, StaticHost
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from gatekeeper.node.transport_ssh import SSHTransport
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from tests.fixtures.sshd import SSHServer

pytestmark = pytest.mark.sshd


def _static_pool(sshd: SSHServer, db: Database, workdir: Path, port: int | None = None) -> Pool:
    host = StaticHost.model_validate(
        {
            "name": "static-1",
            "host": sshd.host,
            "port": port or sshd.port,
            "username": sshd.username,
            "private-key": sshd.private_key,
            "known-hosts": sshd.known_hosts,
            "label": "bare-metal",
            "workdir": str(workdir),
        }
    )
    config = ProviderConfig.model_validate(
        {"name": "lab", "driver": "static", "hosts": [host], "max-servers": 4}
    )
    label = LabelConfig.model_validate({"name": "bare-metal", "min-ready": 1})
    site = SiteConfig(providers=[config], labels=[label])
    return Pool(site, db, {"lab": make_provider(config)}, [label])


def _round(pool: Pool) -> None:
    pool.run_once()
    assert pool.wait_for_launches(timeout=30)


def test_static_node_round_trip(sshd: SSHServer, db: Database, tmp_path: Path) -> None:
    workdir = tmp_path / "gatekeeper"
    pool = _static_pool(sshd, db, workdir)
    nodes = NodeStore(db)
    try:
        _round(pool)
        ready = nodes.list()
        assert [(n.name, n.state, n.address, n.port) for n in ready] == [
            ("static-1", NodeState.READY, sshd.host, sshd.port)
        ]
        _round(pool)
        assert len(nodes.list()) == 1  # one host, one node, however many rounds

        node = nodes.claim("bare-metal", "worker-a", "build-1")
        assert node is not None
        transport = pool.providers["lab"].transport(node)
        assert isinstance(transport, SSHTransport)
        assert transport.root == str(workdir / "static-1")

        workspace = tmp_path / "workspace"
        (workspace / "devstack-gate").mkdir(parents=True)
        (workspace / "devstack-gate" / "devstack-vm-gate.sh").write_text(
            'mkdir -p logs && echo "gate on $(hostname) for $ZUUL_CHANGE" | tee logs/console.txt\n'
        )
        transport.push(workspace, "workspace")
        lines: list[str] = []
        status = transport.run(
            "bash devstack-gate/devstack-vm-gate.sh",
            {"ZUUL_CHANGE": "1234"},
            "workspace",
            lines.append,
            60,
            threading.Event(),
        )
        assert status == 0
        assert lines and lines[-1].endswith("for 1234")
        copied = transport.pull("workspace", ["logs/**"], tmp_path / "collected").files
        assert [p.name for p in copied] == ["console.txt"]
        assert (tmp_path / "collected" / "logs" / "console.txt").read_text().endswith("1234\n")

        assert nodes.release("static-1", hold=False, hold_seconds=3600) == NodeState.DELETE
        _round(pool)
        again = nodes.get("static-1")
        assert again is not None
        assert (again.state, again.claimed_by, again.build_uuid) == (NodeState.READY, "", "")
        assert not (workdir / "static-1" / "workspace").exists()
        assert len(nodes.list()) == 1
    finally:
        pool.stop()


def test_unreachable_static_host_is_not_offered(
    sshd: SSHServer, db: Database, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = int(s.getsockname()[1])
    pool = _static_pool(sshd, db, tmp_path / "gk", port=closed_port)
    try:
        _round(pool)
        assert NodeStore(db).list() == []
    finally:
        pool.stop()
