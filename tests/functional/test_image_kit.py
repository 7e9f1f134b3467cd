"""The devstack image kit, run by ``gatekeeper images update`` on the local
provider, and a build on a node booted from the image it made.

Real parts: the CLI, bash running the shipped kit, git cloning from a Gerrit
simulator's repositories, the real pip filling the pip cache (offline, from
a directory holding the one requirement as a wheel), SQLite, the pool, and
the worker's executor running the job in the node's bubblewrap jail. The
distro packages are listed and not installed: a local image is a directory
on this host, which the kit must not change (it says so).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.config.loader import load_site
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.protocol import JobSpec
from gatekeeper.kit import image_kit_program
from gatekeeper.model.node import ImageState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.worker.executor import BuildExecutor
from gatekeeper.worker.workspace import WorkspaceBuilder
from tests.fixtures.image_kit import KIT_PROJECTS, KitUpstream, kit_upstream

pytestmark = pytest.mark.timeout(90)

LABEL = "devstack"


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KitUpstream:
    made = kit_upstream(tmp_path / "upstream")
    # pip takes these from the environment the kit runs in, as it would a
    # site's mirror settings.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(made.wheels))
    return made


@pytest.fixture
def site_file(tmp_path: Path, upstream: KitUpstream) -> Path:
    kit = {"git-url": upstream.git_url, "projects": KIT_PROJECTS}
    site = {
        "state-dir": str(tmp_path / "state"),
        "providers": [
            {
                "name": "local",
                "driver": "local",
                "max-servers": 2,
                "images": [{"label": LABEL, "kit": kit}],
            }
        ],
        "labels": [{"name": LABEL, "min-ready": 1}],
    }
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_images_update_runs_the_kit_and_a_build_on_its_node_finds_the_git_cache(
    site_file: Path, upstream: KitUpstream, tmp_path: Path
) -> None:
    heads = {project: upstream.sim.branch_head(project) for project in KIT_PROJECTS}
    # The base every image of the label starts from says which release it is.
    base = tmp_path / "state" / "images" / LABEL / "etc"
    base.mkdir(parents=True)
    (base / "os-release").write_text('NAME="Ubuntu"\nVERSION_CODENAME=noble\n')

    result = CliRunner().invoke(main, ["images", "update", "-c", str(site_file)])
    assert result.exit_code == 0, result.output
    shown = result.output
    assert f"[local/{LABEL}] running the devstack image kit" in shown
    for project, head in heads.items():
        assert f"image kit: cached {project} at {head[:7]} (master)" in shown
    directory = "(the image is a directory, not a machine: this host is not the image's to change)"
    assert f"image kit: packages: not installed {directory}; the 14 packages are listed" in shown
    assert f"image kit: stack user: not created {directory}" in shown
    assert "image kit: pip cache: 1 files for the requirements of 1 projects" in shown
    assert f"[local/{LABEL}] READY: " in shown

    site = load_site(site_file, site_file.parent)
    db = Database(site.database)
    db.migrate()
    try:
        (image,) = ImageStore(db).list()
        assert image.state == ImageState.READY
        providers = {p.name: make_provider(p) for p in site.providers}
        pool = Pool(site, db, providers, site.labels)
        pool.run_once()
        assert pool.wait_for_launches(timeout=30)
        pool.stop()
        (node,) = NodeStore(db).list()
        assert node.image == image.name

        # The node, a copy of the image, holds the caches at the branch tips.
        root = Path(node.external_id)
        for project, head in heads.items():
            assert _head(root / "opt" / "git" / project) == head
        packages = (root / "opt" / "cache" / "packages.txt").read_text().split()
        listed = {"bridge-utils", "curl", "libxml2-dev", "qemu-utils", "libvirt-dev", "git"}
        assert listed <= set(packages)
        assert "lvm2" not in packages  # NOPRIME: devstack installs it only when needed
        assert "libvirt-bin" not in packages  # for xenial only
        assert (root / "opt" / "cache" / "pip" / "gkprobe-1.0-py3-none-any.whl").is_file()

        # A build on that node finds the cache through GATEKEEPER_GIT_CACHE,
        # inside its jail, and seeds its repositories from it with no
        # network clone, as the devstack wrap's workspace phase does.
        console: list[str] = []
        executor = BuildExecutor(
            nodes=NodeStore(db),
            providers=providers,
            workspace=WorkspaceBuilder(tmp_path / "worker-cache", {}),
            git_url=upstream.git_url,
            log_root=tmp_path / "logs",
            log_url_base="http://logs.example.org/",
            state_dir=tmp_path / "worker",
            node_wait=10.0,
            console=console.append,
        )
        seed = (
            "for p in openstack/nova openstack/glance; do"
            # The cache belongs to the image's owner, not to the job's user:
            # some git releases refuse such a repository unless told.
            " GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'"
            ' git clone -q --no-hardlinks "$GATEKEEPER_GIT_CACHE/$p" "seeded/$p"'
            ' && echo "seeded $p $(git -C "seeded/$p" rev-parse HEAD)"; done'
        )
        params = {
            "ZUUL_UUID": "c0ffee0cache",
            "ZUUL_PROJECT": "openstack/nova",
            "ZUUL_BRANCH": "master",
            "ZUUL_PIPELINE": "periodic",
            "LOG_PATH": "periodic/devstack/c0ffee0",
        }
        spec = JobSpec(name="devstack", run=seed, node=LABEL, logs=[], timeout=60.0)
        done = executor.run(params, spec, "w1", threading.Event(), lambda _start: None)
        assert done.result == "SUCCESS", (done.error, console)
        for project in ("openstack/nova", "openstack/glance"):
            assert f"seeded {project} {heads[project]}" in console
    finally:
        db.dispose()


def test_a_project_the_upstream_does_not_have_fails_the_image_and_says_why(
    site_file: Path, upstream: KitUpstream
) -> None:
    site = yaml.safe_load(site_file.read_text())
    site["providers"][0]["images"][0]["kit"]["projects"].append("openstack/missing")
    site_file.write_text(yaml.safe_dump(site))
    result = CliRunner().invoke(main, ["images", "update", "-c", str(site_file)])
    assert result.exit_code == 1
    assert "FAILED: the devstack image kit exited 128" in result.output
    assert "openstack/missing" in result.output
    assert "1 of 1 image builds failed" in result.output


def test_a_kit_project_name_that_is_not_a_project_is_refused_with_its_key(
    site_file: Path,
) -> None:
    site = yaml.safe_load(site_file.read_text())
    site["providers"][0]["images"][0]["kit"]["projects"] = ["../../etc"]
    site_file.write_text(yaml.safe_dump(site))
    result = CliRunner().invoke(main, ["images", "update", "-c", str(site_file)])
    assert result.exit_code != 0
    assert "kit.projects" in result.output and "'../../etc'" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the kit as another user")
def test_on_a_machine_without_root_or_sudo_the_kit_stops_and_says_why(
    upstream: KitUpstream, tmp_path: Path
) -> None:
    # A build server whose login user is neither root nor a sudoer: the kit
    # cannot lay out /opt and must say so instead of half-building an image.
    # (Run as nobody, so this host's /opt is not touched.)
    program = image_kit_program(["openstack/glance"], upstream.git_url, "/")
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s"],
        input=program,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert (
        b"image kit: ERROR: cannot write /opt/git (not root, and no passwordless sudo)"
        in done.stderr
    )
    assert not Path("/opt/git").exists()
