"""The kit's workspace phase: where each project's tested state comes from.

Real bash runs the kit's functions.sh against real git repositories in a
temporary directory: the worker's prepared copy in the workspace, a
``ZUUL_URL`` with Gerrit's change refs, an image cache, branch overrides.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gatekeeper.kit import DEVSTACK_GATE

pytestmark = pytest.mark.timeout(30)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    (repo / "file.txt").write_text(message)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def upstream(root: Path, project: str) -> dict[str, str]:
    """A Gerrit-like repository: master, stable/zed, and change 1 on master."""
    repo = root / project
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "master")
    shas = {"master": commit(repo, "base")}
    git(repo, "checkout", "-q", "-b", "stable/zed")
    shas["stable/zed"] = commit(repo, "zed")
    git(repo, "checkout", "-q", "master")
    git(repo, "checkout", "-q", "-b", "change")
    shas["change"] = commit(repo, "the change")
    git(repo, "update-ref", "refs/changes/01/1/1", "HEAD")
    git(repo, "checkout", "-q", "master")
    git(repo, "branch", "-q", "-D", "change")
    return shas


def setup_workspace(tmp: Path, env: dict[str, str]) -> tuple[int, str]:
    script = f"""
        source {DEVSTACK_GATE / "functions.sh"}
        dg_setup_workspace
    """
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "WORKSPACE": str(tmp / "workspace"),
        "BASE": str(tmp / "opt" / "stack"),
        "GATEKEEPER_GIT_CACHE": str(tmp / "cache"),
        **GIT_ENV,
        **env,
    }
    (tmp / "workspace").mkdir(exist_ok=True)
    done = subprocess.run(
        ["bash", "-c", script], env=full, capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout + done.stderr


def head(tmp: Path, short: str) -> tuple[str, str]:
    repo = tmp / "opt" / "stack" / "new" / short
    return git(repo, "rev-parse", "--abbrev-ref", "HEAD"), git(repo, "rev-parse", "HEAD")


def test_the_change_ref_from_zuul_url_then_the_branch_then_master(tmp_path: Path) -> None:
    nova = upstream(tmp_path / "gerrit", "openstack/nova")
    glance = upstream(tmp_path / "gerrit", "openstack/glance")
    status, out = setup_workspace(
        tmp_path,
        {
            "ZUUL_URL": str(tmp_path / "gerrit"),
            "ZUUL_REF": "refs/changes/01/1/1",
            "ZUUL_PROJECT": "openstack/nova",
            "ZUUL_BRANCH": "master",
            "DEVSTACK_GATE_PROJECTS_OVERRIDE": "openstack/nova openstack/glance",
            # glance is tested on a branch it lacks: master it is.
            "OVERRIDE_GLANCE_PROJECT_BRANCH": "stable/yoga",
        },
    )
    assert status == 0, out
    assert head(tmp_path, "nova") == ("master", nova["change"])
    assert "openstack/nova: master at " + nova["change"] + " (refs/changes/01/1/1)" in out
    assert head(tmp_path, "glance") == ("master", glance["master"])
    assert "openstack/glance: master at " + glance["master"] + " (the tip of master)" in out
    assert "(no image cache)" in out


def test_an_override_picks_its_branch_and_the_cache_seeds_the_clone(tmp_path: Path) -> None:
    keystone = upstream(tmp_path / "gerrit", "openstack/keystone")
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "gerrit" / "openstack/keystone"),
        str(tmp_path / "cache" / "openstack" / "keystone"))  # fmt: skip
    status, out = setup_workspace(
        tmp_path,
        {
            "ZUUL_URL": str(tmp_path / "gerrit"),
            "ZUUL_REF": "refs/changes/01/1/1",
            "ZUUL_PROJECT": "openstack/nova",
            "ZUUL_BRANCH": "master",
            "DEVSTACK_GATE_PROJECTS_OVERRIDE": "openstack/keystone",
            "OVERRIDE_KEYSTONE_PROJECT_BRANCH": "stable/zed",
        },
    )
    assert status == 0, out
    assert head(tmp_path, "keystone") == ("stable/zed", keystone["stable/zed"])
    assert "openstack/keystone: seeded from the image cache" in out


def test_the_workers_prepared_copy_is_the_mergers_state(tmp_path: Path) -> None:
    """The worker rsyncs each project at the merger's state; ZUUL_URL (Gerrit,
    which the node cannot reach) is not asked."""
    upstream(tmp_path / "gerrit", "openstack/nova")
    prepared = tmp_path / "workspace" / "openstack" / "nova"
    git(tmp_path, "clone", "-q", str(tmp_path / "gerrit" / "openstack/nova"), str(prepared))
    merged = commit(prepared, "merged by the merger")
    status, out = setup_workspace(
        tmp_path,
        {
            "ZUUL_URL": "ssh://gatekeeper@gerrit.invalid:29418",
            "ZUUL_REF": "refs/zuul/master/Z1",
            "ZUUL_PROJECT": "openstack/nova",
            "ZUUL_BRANCH": "master",
        },
    )
    assert status == 0, out
    assert head(tmp_path, "nova") == ("master", merged)
    assert "(the merger's state of refs/zuul/master/Z1)" in out


def test_a_project_found_nowhere_fails_the_phase(tmp_path: Path) -> None:
    status, out = setup_workspace(
        tmp_path,
        {
            "ZUUL_URL": str(tmp_path / "gerrit"),
            "ZUUL_PROJECT": "openstack/nova",
            "DEVSTACK_GATE_PROJECTS_OVERRIDE": "openstack/nova",
        },
    )
    assert status == 1
    assert f"openstack/nova: ERROR: cannot clone {tmp_path}/gerrit/openstack/nova" in out
