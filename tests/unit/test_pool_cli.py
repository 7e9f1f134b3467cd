"""``gatekeeper nodes``, ``images`` and ``pool status`` on a real SQLite
database and the local provider; ``nodes hold --ssh-key`` on a node the pool
launched with an ``openstack`` provider on the in-process fake cloud, with
a real sshd behind it and the real OpenSSH client as the developer."""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import update

from gatekeeper.cli import main
from gatekeeper.config.loader import load_site
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.pool_view import age
from gatekeeper.db.tables import Node
from gatekeeper.model.node import ImageState, LaunchedNode, NodeState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.cloud import unregister_cloud
from tests.fixtures.fake_cloud import FakeCloud, registered
from tests.fixtures.gerrit_sim import make_ssh_key
from tests.fixtures.sshd import SSHServer


def _write_site(tmp_path: Path, provider: dict[str, Any], min_ready: int, **extra: Any) -> Path:
    """``tmp_path/gatekeeper.yaml``: one provider, the label trusty, state in tmp_path."""
    path = tmp_path / "gatekeeper.yaml"
    site = {
        "state-dir": str(tmp_path / "state"),
        "providers": [provider],
        "labels": [{"name": "trusty", "min-ready": min_ready}],
        **extra,
    }
    path.write_text(yaml.safe_dump(site))
    return path


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    setup = tmp_path / "cache-packages.sh"
    setup.write_text('set -e\necho "pip cache" > "$TEMPLATE/pip-cache"\n')
    local = {
        "name": "local",
        "driver": "local",
        "max-servers": 6,
        "images": [{"label": "trusty", "setup": [str(setup)]}],
    }
    return _write_site(tmp_path, local, 2, reap={"hold-failed": "24h"})


def _run(site_file: Path, group: str, command: str, *rest: str) -> Result:
    """``gatekeeper GROUP COMMAND -c SITE REST...``"""
    return CliRunner().invoke(main, [group, command, "-c", str(site_file), *rest])


def _db(site_file: Path) -> Database:
    site = load_site(site_file, site_file.parent)
    db = Database(site.database)
    db.migrate()
    return db


def _ready(db: Database, name: str, state_dir: Path) -> None:
    nodes = NodeStore(db)
    nodes.add(name, "trusty", "local")
    nodes.set_ready(name, LaunchedNode(external_id=str(state_dir / "nodes" / name)))


def test_age_is_short_and_readable() -> None:
    assert [age(s) for s in (5, 125, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "5s",
        "2m",
        "3h05m",
        "2d04h",
    ]


def test_nodes_list_hold_release_delete(site_file: Path, tmp_path: Path) -> None:
    db = _db(site_file)
    _ready(db, "trusty-local-a", tmp_path / "state")
    _ready(db, "trusty-local-b", tmp_path / "state")
    nodes = NodeStore(db)
    nodes.claim("trusty", "worker-1", "build-0123456789abcdef")

    listed = _run(site_file, "nodes", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:8] == [
        "id",
        "name",
        "label",
        "provider",
        "state",
        "age",
        "address",
        "build",
    ]
    assert "trusty-local-a" in lines[1] and "USED" in lines[1] and "build-012345" in lines[1]
    assert "trusty-local-b" in lines[2] and "READY" in lines[2]

    held = _run(site_file, "nodes", "hold", "2", "--reason", "debug bug 123", "--for", "48h")
    assert held.exit_code == 0, held.output
    assert "node 2 (trusty-local-b) held for 2d00h: debug bug 123" in held.output
    node = nodes.get("trusty-local-b")
    assert node is not None and node.state == NodeState.HOLD and node.comment == "debug bug 123"
    assert node.hold_until is not None and node.hold_until > time.time() + 47 * 3600
    # An operator's hold: the hold cap never releases it.
    assert "HOLD operator (1d23h left)" in _run(site_file, "nodes", "list").output

    forever = _run(site_file, "nodes", "hold", "trusty-local-a", "--reason", "keep", "--for", "0")
    assert forever.exit_code == 0 and "until released" in forever.output
    refused = _run(site_file, "nodes", "hold", "nope", "--reason", "x")
    assert refused.exit_code == 1 and "no node nope" in refused.output
    bad = _run(site_file, "nodes", "hold", "1", "--reason", "x", "--for", "soon")
    assert bad.exit_code == 2 and "not a duration" in bad.output
    no_key = tmp_path / "key.pub"
    no_key.write_text("ssh-ed25519 AAAA dev@example\n")
    keyed = _run(site_file, "nodes", "hold", "1", "--reason", "x", "--ssh-key", str(no_key))
    assert keyed.exit_code == 1 and "take no SSH keys" in keyed.output
    # Refused before the hold: the node keeps the hold it had ("keep").
    assert nodes.get("trusty-local-a").comment == "keep"  # type: ignore[union-attr]

    released = _run(site_file, "nodes", "release", "2")
    assert released.exit_code == 0 and "DELETE" in released.output
    assert nodes.get("trusty-local-b").state == NodeState.DELETE  # type: ignore[union-attr]
    again = _run(site_file, "nodes", "release", "2")
    assert again.exit_code == 1 and "not held" in again.output

    deleted = _run(site_file, "nodes", "delete", "trusty-local-a")
    assert deleted.exit_code == 0
    assert {n.state for n in nodes.list()} == {NodeState.DELETE}
    db.dispose()


def test_pool_status_counts_per_label_and_provider(site_file: Path, tmp_path: Path) -> None:
    db = _db(site_file)
    for name in ("a", "b", "c"):
        _ready(db, name, tmp_path / "state")
    nodes = NodeStore(db)
    nodes.claim("trusty", "w", "x")
    nodes.add("d", "trusty", "local")
    nodes.request("trusty", "w", "y")
    nodes.request("xenial", "w", "z")
    result = _run(site_file, "pool", "status")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert rows[0] == [
        "label",
        "provider",
        "ready",
        "building",
        "in",
        "use",
        "held",
        "deleting",
        "waiting",
        "min-ready",
        "hold-max",
        "capacity",
    ]
    assert rows[1] == ["trusty", "local", "2", "1", "1", "0", "0", "1", "2", "2", "4/6"]
    assert rows[2] == ["xenial", "-", "0", "0", "0", "0", "0", "1", "0", "2", "-"]
    db.dispose()


def test_images_update_builds_shows_progress_and_nodes_use_the_image(
    site_file: Path, tmp_path: Path
) -> None:
    result = _run(site_file, "images", "update", "--label", "trusty")
    assert result.exit_code == 0, result.output
    assert "[local/trusty] running cache-packages.sh" in result.output
    assert "[local/trusty] READY: trusty-local-" in result.output

    listed = _run(site_file, "images", "list")
    assert listed.exit_code == 0
    assert "READY (current)" in listed.output

    db = _db(site_file)
    site = load_site(site_file, site_file.parent)
    (image,) = ImageStore(db).list()
    assert image.state == ImageState.READY
    assert (Path(image.external_id) / "pip-cache").read_text() == "pip cache\n"
    providers = {p.name: make_provider(p) for p in site.providers}
    pool = Pool(site, db, providers, site.labels)
    pool.run_once()
    assert pool.wait_for_launches(timeout=30)
    pool.stop()
    for node in NodeStore(db).list():
        assert node.state == NodeState.READY and node.image == image.name
        assert (Path(node.external_id) / "pip-cache").read_text() == "pip cache\n"
    nothing = _run(site_file, "images", "update", "--provider", "elsewhere")
    assert nothing.exit_code == 1 and "nothing to build" in nothing.output
    db.dispose()


def test_images_update_reports_a_failed_build(site_file: Path, tmp_path: Path) -> None:
    (tmp_path / "cache-packages.sh").write_text("echo mirror down >&2\nexit 4\n")
    result = _run(site_file, "images", "update")
    assert result.exit_code == 1
    assert "FAILED: setup cache-packages.sh exited 4: mirror down" in result.output
    assert "1 of 1 image builds failed" in result.output


def test_hold_refuses_a_key_file_that_is_not_text(site_file: Path, tmp_path: Path) -> None:
    db = _db(site_file)
    _ready(db, "trusty-local-a", tmp_path / "state")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(b"\x00\xff\xfe private key by mistake")
    held = _run(site_file, "nodes", "hold", "1", "--reason", "x", "--ssh-key", str(key_file))
    assert held.exit_code == 2 and "not a public key file (not text)" in held.output
    assert NodeStore(db).get("trusty-local-a").state == NodeState.READY  # type: ignore[union-attr]
    db.dispose()


# -- nodes hold --ssh-key on a cloud node --------------------------------------


@pytest.fixture
def cloud_site(tmp_path: Path, sshd_home: SSHServer) -> Iterator[Path]:
    """A site file with one ``openstack`` provider on a fake cloud whose
    servers all answer SSH on ``sshd_home``."""
    cloud = registered(FakeCloud())
    rax = {
        "name": "rax",
        "driver": "openstack",
        "cloud": cloud.name,
        "rate": 0,
        "poll-interval": 0.02,
        "boot-timeout": 15,
        "ssh-port": sshd_home.port,
        "max-servers": 2,
        "root": str(tmp_path / "rax"),
        "images": [
            {
                "label": "trusty",
                "base-image": "ubuntu-trusty",
                "username": sshd_home.username,
                "private-key": str(sshd_home.private_key),
            }
        ],
    }
    path = _write_site(tmp_path, rax, 1)
    yield path
    unregister_cloud(cloud.name)


@pytest.fixture
def cloud_node(cloud_site: Path) -> Node:
    """A READY node the pool launched from ``cloud_site``: its host key was
    recorded when it first answered SSH."""
    db = _db(cloud_site)
    site = load_site(cloud_site, cloud_site.parent)
    pool = Pool(
        site,
        db,
        {p.name: make_provider(p, site.pool.name) for p in site.providers},
        site.labels,
    )
    try:
        pool.run_once()
        assert pool.wait_for_launches(timeout=60)
    finally:
        pool.stop()
    (node,) = NodeStore(db).list()
    db.dispose()
    assert node.state == NodeState.READY and node.host_keys
    return node


def _state(site_file: Path, name: str) -> str:
    db = _db(site_file)
    node = NodeStore(db).get(name)
    db.dispose()
    assert node is not None
    return node.state


def _keygen(path: Path, comment: str) -> Path:
    """A new key pair at ``path``; its public half."""
    make_ssh_key(path, comment)
    return path.with_name(path.name + ".pub")


def _ssh(
    node: Node, key: Path, known_hosts: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """The developer's ``ssh`` to the node: that key alone, that host key alone
    (``-F none``: nothing from this machine's ssh config either)."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            "none",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-p",
            str(node.port),
            f"{node.username}@{node.address}",
            command,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.sshd
def test_hold_with_ssh_key_lets_the_developer_in(
    cloud_site: Path, cloud_node: Node, sshd_home: SSHServer, tmp_path: Path
) -> None:
    assert sshd_home.home is not None
    dev_pub = _keygen(tmp_path / "dev_key", "dev@example")
    known_hosts = tmp_path / "dev_known_hosts"
    known_hosts.write_text(cloud_node.host_keys + "\n")
    before = _ssh(cloud_node, tmp_path / "dev_key", known_hosts, "echo in")
    assert before.returncode == 255 and "Permission denied" in before.stderr, before

    held = _run(
        cloud_site,
        "nodes",
        "hold",
        str(cloud_node.id),
        "--reason",
        "bug 42",
        "--ssh-key",
        str(dev_pub),
    )
    assert held.exit_code == 0, held.output
    assert f"ssh {sshd_home.username}@127.0.0.1 -p {sshd_home.port}\n" in held.output
    assert _state(cloud_site, cloud_node.name) == NodeState.HOLD

    after = _ssh(cloud_node, tmp_path / "dev_key", known_hosts, "echo in")
    assert (after.returncode, after.stdout) == (0, "in\n"), after
    ssh_dir = sshd_home.home / ".ssh"
    assert (ssh_dir / "authorized_keys").read_text() == dev_pub.read_text()
    # umask 077: sshd's StrictModes would refuse a group-writable file.
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ssh_dir / "authorized_keys").stat().st_mode) == 0o600
    real = Path.home() / ".ssh" / "authorized_keys"
    assert not real.exists() or dev_pub.read_text() not in real.read_text()


@pytest.mark.sshd
@pytest.mark.parametrize(
    "text",
    [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA one@example\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB two@example\n",
        "ssh-ed25519 AAAA x\n; touch {pwned}",
        "",
    ],
    ids=["two-keys", "hostile", "empty"],
)
def test_hold_refuses_a_key_file_that_is_not_one_key(
    cloud_site: Path, cloud_node: Node, sshd_home: SSHServer, tmp_path: Path, text: str
) -> None:
    assert sshd_home.home is not None
    authorized = sshd_home.home / ".ssh" / "authorized_keys"
    authorized.parent.mkdir()
    existing = _keygen(tmp_path / "existing", "image@example").read_text()
    authorized.write_text(existing)
    key_file = tmp_path / "dev.pub"
    key_file.write_text(text.format(pwned=tmp_path / "pwned"))

    held = _run(
        cloud_site, "nodes", "hold", str(cloud_node.id), "--reason", "x", "--ssh-key", str(key_file)
    )
    assert held.exit_code == 2
    assert f"Invalid value for --ssh-key: {key_file}: a public key file must be one key line" in (
        held.output
    )
    assert authorized.read_text() == existing
    assert not (tmp_path / "pwned").exists()
    assert _state(cloud_site, cloud_node.name) == NodeState.READY


@pytest.mark.sshd
def test_hold_refuses_a_node_whose_host_key_changed(
    cloud_site: Path, cloud_node: Node, sshd_home: SSHServer, tmp_path: Path
) -> None:
    assert sshd_home.home is not None
    other = _keygen(tmp_path / "other_host_key", "elsewhere").read_text().split()
    db = _db(cloud_site)
    with db.session() as session:
        session.execute(
            update(Node)
            .where(Node.name == cloud_node.name)
            .values(host_keys=f"[127.0.0.1]:{sshd_home.port} {other[0]} {other[1]}")
        )
    db.dispose()
    dev_pub = _keygen(tmp_path / "dev_key", "dev@example")

    held = _run(
        cloud_site, "nodes", "hold", str(cloud_node.id), "--reason", "x", "--ssh-key", str(dev_pub)
    )
    assert held.exit_code == 1
    assert f"node {cloud_node.id} ({cloud_node.name}) is held, but the key is not installed" in (
        held.output
    )
    assert "does not match" in held.output
    assert not (sshd_home.home / ".ssh").exists()
    assert _state(cloud_site, cloud_node.name) == NodeState.HOLD


@pytest.mark.sshd
def test_hold_adds_the_key_after_a_last_line_without_its_newline(
    cloud_site: Path, cloud_node: Node, sshd_home: SSHServer, tmp_path: Path
) -> None:
    assert sshd_home.home is not None
    authorized = sshd_home.home / ".ssh" / "authorized_keys"
    authorized.parent.mkdir()
    existing = _keygen(tmp_path / "existing", "image@example").read_text()
    authorized.write_text(existing.rstrip("\n"))
    dev_pub = _keygen(tmp_path / "dev_key", "dev@example")

    held = _run(
        cloud_site, "nodes", "hold", str(cloud_node.id), "--reason", "x", "--ssh-key", str(dev_pub)
    )
    assert held.exit_code == 0, held.output
    assert authorized.read_text() == existing + dev_pub.read_text()
    known_hosts = tmp_path / "dev_known_hosts"
    known_hosts.write_text(cloud_node.host_keys + "\n")
    for key in ("existing", "dev_key"):
        login = _ssh(cloud_node, tmp_path / key, known_hosts, "echo in")
        assert (login.returncode, login.stdout) == (0, "in\n"), login
