"""``gatekeeper nodes``, ``images`` and ``pool status`` on a real SQLite
database and the local provider."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from gatekeeper.cli import main
from gatekeeper.cli_pool import age
from gatekeeper.config.loader import load_site
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import ImageState, NodeState
from gatekeeper.pool.images import ImageStore
from gatekeeper.pool.nodes import NodeStore
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.base import LaunchedNode


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    setup = tmp_path / "cache-packages.sh"
    setup.write_text('set -e\necho "pip cache" > "$TEMPLATE/pip-cache"\n')
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state-dir": str(tmp_path / "state"),
                "providers": [
                    {
                        "name": "local",
                        "driver": "local",
                        "max-servers": 6,
                        "images": [{"label": "trusty", "setup": [str(setup)]}],
                    }
                ],
                "labels": [{"name": "trusty", "min-ready": 2}],
                "reap": {"hold-failed": "24h"},
            }
        )
    )
    return path


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
    assert "HOLD (1d23h left)" in _run(site_file, "nodes", "list").output

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
        "capacity",
    ]
    assert rows[1] == ["trusty", "local", "2", "1", "1", "0", "0", "1", "2", "4/6"]
    assert rows[2] == ["xenial", "-", "0", "0", "0", "0", "0", "1", "0", "-"]
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
