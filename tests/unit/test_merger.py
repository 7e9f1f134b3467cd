"""The merger against real git repositories standing in for Gerrit's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gatekeeper.scheduler.merger import Merger
from gatekeeper.worker.workspace import ChangeRef

ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "a@example.org",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "a@example.org",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout


class FakeGerrit:
    """Bare repositories with a master branch and changes under refs/changes/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        self._numbers = 0

    def project(self, name: str, files: dict[str, str]) -> None:
        bare = self.root / name
        bare.mkdir(parents=True)
        git("init", "-q", "--bare", "--initial-branch=master", str(bare), cwd=self.root)
        work = self.root / f"{name}.work"
        git("clone", "-q", str(bare), str(work), cwd=self.root)
        git("checkout", "-q", "-b", "master", cwd=work)
        for rel, text in files.items():
            (work / rel).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "Initial", cwd=work)
        git("push", "-q", "origin", "master", cwd=work)

    def change(
        self, project: str, subject: str, files: dict[str, str], parent: str = ""
    ) -> ChangeRef:
        """A commit on master (or on ``parent``, a change ref) pushed as a new change."""
        self._numbers += 1
        number = self._numbers
        work = self.root / f"{project}.work"
        git("fetch", "-q", "origin", parent or "master", cwd=work)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=work)
        for rel, text in files.items():
            (work / rel).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", subject, cwd=work)
        ref = f"refs/changes/{number % 100:02d}/{number}/1"
        git("push", "-q", "origin", f"HEAD:{ref}", cwd=work)
        return ChangeRef(project, "master", ref, number, 1)

    def advance(self, project: str, subject: str, files: dict[str, str]) -> None:
        """Someone else's change merged: master moves."""
        work = self.root / f"{project}.work"
        git("fetch", "-q", "origin", "master", cwd=work)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=work)
        for rel, text in files.items():
            (work / rel).write_text(text)
        git("commit", "-qam", subject, cwd=work)
        git("push", "-q", "origin", "HEAD:master", cwd=work)


@pytest.fixture
def gerrit(tmp_path: Path) -> FakeGerrit:
    root = tmp_path / "gerrit"
    root.mkdir()
    fake = FakeGerrit(root)
    fake.project("org/nova", {"a.txt": "1\n2\n3\n", "b.txt": "b\n"})
    fake.project("org/glance", {"g.txt": "g\n"})
    fake.project("org/keystone", {"k.txt": "k\n"})
    return fake


def subjects(merger: Merger, project: str, ref: str) -> list[str]:
    out = git("log", "--format=%s", ref, cwd=merger.repo(project))
    return out.splitlines()


def fetch_as_a_worker(merger: Merger, project: str, ref: str, dest: Path) -> list[str]:
    """What a build sees: a clone that fetched the ref from ZUUL_URL/<project>."""
    git("init", "-q", str(dest), cwd=dest.parent)
    git("fetch", "-q", f"{merger.url}/{project}", ref, cwd=dest)
    return git("log", "--format=%s", "FETCH_HEAD", cwd=dest).splitlines()


@pytest.mark.parametrize("mode", ["merge", "merge-resolve", "cherry-pick"])
def test_changes_are_applied_in_order_and_published_in_each_project(
    gerrit: FakeGerrit, tmp_path: Path, mode: str
) -> None:
    a = gerrit.change("org/nova", "A", {"b.txt": "bA\n"})
    b = gerrit.change("org/glance", "B", {"g.txt": "gB\n"})
    c = gerrit.change("org/nova", "C", {"c.txt": "c\n"})
    gerrit.advance("org/nova", "Elsewhere", {"a.txt": "1\n2\n3\n4\n"})
    merger = Merger(tmp_path / "merger", gerrit.url)

    result = merger.merge([a, b, c], {"org/nova": mode, "org/glance": mode}, "item1")

    assert result.ok, result.error
    assert result.ref == "refs/zuul/master/Zitem1"
    nova = subjects(merger, "org/nova", result.ref)
    assert {"A", "C", "Elsewhere", "Initial"} <= set(nova)
    assert nova.index("C") < nova.index("A")  # C on top of A (newest first)
    if mode == "cherry-pick":
        assert nova[:3] == ["C", "A", "Elsewhere"]  # no merge commits
    assert "B" in subjects(merger, "org/glance", result.ref)
    assert set(result.commits) == {"org/nova", "org/glance"}
    # A worker fetching the ref gets exactly that commit.
    work = tmp_path / "worker"
    work.mkdir()
    assert fetch_as_a_worker(merger, "org/nova", result.ref, work / "nova") == nova
    # A project no change touches has no such ref: builds use its branch tip.
    assert not (merger.root / "org/keystone").exists()


def test_a_change_that_does_not_merge_is_named_and_nothing_is_published(
    gerrit: FakeGerrit, tmp_path: Path
) -> None:
    ok = gerrit.change("org/glance", "Fine", {"g.txt": "fine\n"})
    a = gerrit.change("org/nova", "A", {"a.txt": "1\nA\n3\n"})
    b = gerrit.change("org/nova", "B", {"a.txt": "1\nB\n3\n"})  # same line as A
    merger = Merger(tmp_path / "merger", gerrit.url)

    result = merger.merge([ok, a, b], {}, "item2")

    assert not result.ok
    assert result.conflict == f"org/nova {b.number},1"
    assert "does not merge" in result.error
    for project in ("org/nova", "org/glance"):
        refs = git("for-each-ref", "refs/zuul/", cwd=merger.repo(project))
        assert refs == ""
    # The work tree is clean for the next merge, which succeeds.
    again = merger.merge([a], {}, "item3")
    assert again.ok, again.error


def test_cherry_pick_of_a_change_already_in_the_branch(gerrit: FakeGerrit, tmp_path: Path) -> None:
    a = gerrit.change("org/nova", "A", {"b.txt": "bA\n"})
    merger = Merger(tmp_path / "merger", gerrit.url)
    first = merger.merge([a], {"org/nova": "cherry-pick"}, "one")
    second = merger.merge([a, a], {"org/nova": "cherry-pick"}, "two")
    assert first.ok and second.ok, (first.error, second.error)


@pytest.mark.parametrize(
    "change",
    [
        ChangeRef("../escape", "master", "refs/changes/01/1/1", 1, 1),
        ChangeRef("org/nova", "master", "refs/changes/01/1/1; rm -rf /", 1, 1),
        ChangeRef("org/nova", "-b", "refs/changes/01/1/1", 1, 1),
        ChangeRef("org/nova", "master", "--upload-pack=touch /tmp/x", 1, 1),
    ],
)
def test_hostile_names_never_reach_git(
    gerrit: FakeGerrit, tmp_path: Path, change: ChangeRef
) -> None:
    merger = Merger(tmp_path / "merger", gerrit.url)
    result = merger.merge([change], {})
    assert not result.ok and "refusing" in result.error
    assert not (tmp_path / "merger").exists()
