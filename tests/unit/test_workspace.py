"""WorkspaceBuilder against real git repositories made in tmp_path."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from gatekeeper.errors import WorkspaceError
from gatekeeper.git.refs import ChangeRef, parse_zuul_changes
from gatekeeper.git.runner import gerrit_git_env
from gatekeeper.worker.workspace import WorkspaceBuilder

pytestmark = pytest.mark.timeout(60)

_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "init.defaultBranch=master", *args],
        cwd=cwd,
        env=_ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Upstream:
    """Bare repositories under one directory, playing Gerrit's git side."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def create(self, project: str, files: dict[str, str] | None = None) -> Path:
        bare = self.root / project
        bare.mkdir(parents=True)
        git(bare, "init", "-q", "--bare")
        work = self.root.parent / "work" / project
        work.mkdir(parents=True)
        git(work, "init", "-q")
        for name, text in (files or {"README": "hello\n"}).items():
            (work / name).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"Initial commit of {project}")
        git(work, "remote", "add", "origin", str(bare))
        git(work, "push", "-q", "origin", "HEAD:refs/heads/master")
        return work

    def change(
        self, project: str, number: int, files: dict[str, str], subject: str, base: str = "master"
    ) -> ChangeRef:
        """Commit ``files`` on top of ``base`` and push it as refs/changes/NN/N/1."""
        work = self.root.parent / "work" / project
        git(work, "fetch", "-q", "origin", base)
        git(work, "checkout", "-q", "-B", f"change{number}", "FETCH_HEAD")
        for name, text in files.items():
            (work / name).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", subject)
        ref = f"refs/changes/{number % 100:02d}/{number}/1"
        git(work, "push", "-q", "origin", f"HEAD:{ref}")
        return ChangeRef(project, base, ref, number, 1)

    def commit_on_branch(
        self, project: str, branch: str, files: dict[str, str], subject: str
    ) -> None:
        work = self.root.parent / "work" / project
        exists = git(work, "ls-remote", "origin", f"refs/heads/{branch}")
        git(work, "fetch", "-q", "origin", branch if exists else "master")
        git(work, "checkout", "-q", "-B", branch, "FETCH_HEAD")
        for name, text in files.items():
            (work / name).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", subject)
        git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


@pytest.fixture
def builder(tmp_path: Path) -> WorkspaceBuilder:
    return WorkspaceBuilder(tmp_path / "cache", {})


def test_clone_checks_out_branch_and_reports_head(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("openstack/nova")
    states = builder.prepare(tmp_path / "ws", upstream.url, ["openstack/nova"], [], "master")
    assert [(s.project, s.branch, s.subject) for s in states] == [
        ("openstack/nova", "master", "Initial commit of openstack/nova")
    ]
    repo = tmp_path / "ws" / "openstack" / "nova"
    assert (repo / "README").read_text() == "hello\n"
    assert git(repo, "rev-parse", "HEAD") == states[0].head_sha
    # The cache is flat: one mirror per project, named without slashes.
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.git")) == ["openstack%2Fnova.git"]


def test_changes_are_merged_in_order(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("openstack/nova", {"a.txt": "a\n", "b.txt": "b\n"})
    first = upstream.change("openstack/nova", 1, {"a.txt": "A\n"}, "Change a")
    # Independent branch from master: merging it after `first` needs a merge commit.
    second = upstream.change("openstack/nova", 2, {"b.txt": "B\n"}, "Change b")
    upstream.commit_on_branch("openstack/nova", "master", {"c.txt": "c\n"}, "Moves master on")
    states = builder.prepare(
        tmp_path / "ws", upstream.url, ["openstack/nova"], [first, second], "master"
    )
    repo = tmp_path / "ws" / "openstack/nova"
    assert (repo / "a.txt").read_text() == "A\n"
    assert (repo / "b.txt").read_text() == "B\n"
    assert (repo / "c.txt").read_text() == "c\n"
    assert git(repo, "rev-list", "--count", "--merges", "HEAD") == "2"
    assert states[0].head_sha == git(repo, "rev-parse", "HEAD")


def test_fast_forward_merge(upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path) -> None:
    upstream.create("nova")
    change = upstream.change("nova", 1, {"x": "1\n"}, "Add x")
    states = builder.prepare(tmp_path / "ws", upstream.url, ["nova"], [change], "master")
    assert states[0].subject == "Add x"
    assert git(tmp_path / "ws" / "nova", "rev-list", "--count", "--merges", "HEAD") == "0"


def test_second_prepare_updates_the_cache(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("nova")
    builder.prepare(tmp_path / "ws1", upstream.url, ["nova"], [], "master")
    upstream.commit_on_branch("nova", "master", {"new": "n\n"}, "Newer")
    states = builder.prepare(tmp_path / "ws2", upstream.url, ["nova"], [], "master")
    assert states[0].subject == "Newer"


def test_conflict_names_the_change(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("nova", {"f": "base\n"})
    one = upstream.change("nova", 11, {"f": "one\n"}, "One")
    two = upstream.change("nova", 12, {"f": "two\n"}, "Two")
    with pytest.raises(WorkspaceError, match="12,1"):
        builder.prepare(tmp_path / "ws", upstream.url, ["nova"], [one, two], "master")


def test_missing_branch_falls_back_to_master_and_other_projects_unchanged(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("nova")
    upstream.create("glance")
    upstream.commit_on_branch("nova", "stable/x", {"s": "s\n"}, "Stable work")
    change = upstream.change("nova", 3, {"y": "y\n"}, "Fix on stable", base="stable/x")
    states = builder.prepare(
        tmp_path / "ws", upstream.url, ["nova", "glance"], [change], "stable/x"
    )
    assert [(s.project, s.branch, s.subject) for s in states] == [
        ("nova", "stable/x", "Fix on stable"),
        ("glance", "master", "Initial commit of glance"),
    ]


def test_change_for_another_branch_is_not_merged(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("nova")
    upstream.commit_on_branch("nova", "stable/x", {"s": "s\n"}, "Stable work")
    change = upstream.change("nova", 4, {"z": "z\n"}, "Stable fix", base="stable/x")
    states = builder.prepare(tmp_path / "ws", upstream.url, ["nova"], [change], "master")
    assert states[0].subject == "Initial commit of nova"


def test_file_url_works(upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path) -> None:
    upstream.create("nova")
    change = upstream.change("nova", 5, {"q": "q\n"}, "Via file URL")
    states = builder.prepare(
        tmp_path / "ws", (tmp_path / "upstream").as_uri(), ["nova"], [change], "master"
    )
    assert states[0].subject == "Via file URL"


def test_concurrent_prepares_share_the_cache(
    upstream: Upstream, builder: WorkspaceBuilder, tmp_path: Path
) -> None:
    upstream.create("nova")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            builder.prepare(tmp_path / f"ws{i}", upstream.url, ["nova"], [], "master")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert all((tmp_path / f"ws{i}" / "nova" / "README").exists() for i in range(4))


@pytest.mark.parametrize(
    "project",
    ["../evil", "/etc", "a/../../b", "a//b", "", ".", "nova/..", "-oProxy", "a b", "x/.git/../y"],
    ids=[
        "dotdot",
        "absolute",
        "inner-dotdot",
        "empty-part",
        "empty",
        "dot",
        "trailing",
        "option",
        "space",
        "git",
    ],
)
def test_hostile_project_names_refused(
    builder: WorkspaceBuilder, tmp_path: Path, project: str
) -> None:
    with pytest.raises(WorkspaceError, match="unsafe"):
        builder.prepare(tmp_path / "ws", str(tmp_path), [project], [], "master")
    assert not (tmp_path / "cache").exists()


def test_hostile_change_ref_refused(builder: WorkspaceBuilder, tmp_path: Path) -> None:
    bad = ChangeRef("nova", "master", "--upload-pack=touch /tmp/x", 1, 1)
    with pytest.raises(WorkspaceError, match="unsafe ref"):
        builder.prepare(tmp_path / "ws", str(tmp_path), ["nova"], [bad], "master")


def test_parse_zuul_changes() -> None:
    assert parse_zuul_changes("") == []
    assert parse_zuul_changes(
        "openstack/nova:master:refs/changes/01/1/1^openstack/glance:stable/x:refs/changes/34/1234/5"
    ) == [
        ChangeRef("openstack/nova", "master", "refs/changes/01/1/1", 1, 1),
        ChangeRef("openstack/glance", "stable/x", "refs/changes/34/1234/5", 1234, 5),
    ]
    with pytest.raises(WorkspaceError):
        parse_zuul_changes("nova:master")


def test_gerrit_git_env_quotes_paths(tmp_path: Path) -> None:
    env = gerrit_git_env(Path("/k dir/id key"), Path("/kh;rm -rf/known"), 29418)
    cmd = env["GIT_SSH_COMMAND"]
    assert cmd.startswith("ssh -i '/k dir/id key' -p 29418 -o IdentitiesOnly=yes -o BatchMode=yes")
    assert "'UserKnownHostsFile=/kh;rm -rf/known'" in cmd
    assert cmd.endswith("-o StrictHostKeyChecking=yes")
