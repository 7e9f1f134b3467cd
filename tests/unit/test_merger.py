"""The merger against real git repositories standing in for Gerrit's."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gatekeeper.git.refs import ChangeRef
from gatekeeper.scheduler.merger import Merger, ref_time
from gatekeeper.worker.workspace import WorkspaceBuilder

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

    result = merger.merge([a, b, c], {"org/nova": mode, "org/glance": mode}, name="item1")

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

    result = merger.merge([ok, a, b], {}, name="item2")

    assert not result.ok
    assert result.conflict == f"org/nova {b.number},1"
    assert "does not merge" in result.error
    for project in ("org/nova", "org/glance"):
        refs = git("for-each-ref", "refs/zuul/", cwd=merger.repo(project))
        assert refs == ""
    # The work tree is clean for the next merge, which succeeds.
    again = merger.merge([a], {}, name="item3")
    assert again.ok, again.error


def test_cherry_pick_of_a_change_already_in_the_branch(gerrit: FakeGerrit, tmp_path: Path) -> None:
    a = gerrit.change("org/nova", "A", {"b.txt": "bA\n"})
    merger = Merger(tmp_path / "merger", gerrit.url)
    first = merger.merge([a], {"org/nova": "cherry-pick"}, name="one")
    second = merger.merge([a, a], {"org/nova": "cherry-pick"}, name="two")
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


def test_a_served_merger_url_is_what_builds_fetch_from(gerrit: FakeGerrit, tmp_path: Path) -> None:
    """`merger-url`: the merger's directory served by `git daemon` to other hosts."""
    from tests.fixtures.gearmand import free_port

    root = tmp_path / "merger"
    root.mkdir()
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={root}",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        merger = Merger(root, gerrit.url, url=f"git://127.0.0.1:{port}")
        a = gerrit.change("org/nova", "A", {"b.txt": "bA\n"})
        result = merger.merge([a], {}, name="served")
        assert result.ok, result.error
        work = tmp_path / "worker"
        work.mkdir()
        for _ in range(50):  # the daemon takes a moment to listen
            try:
                seen = fetch_as_a_worker(merger, "org/nova", result.ref, work / "nova")
                break
            except subprocess.CalledProcessError:
                shutil.rmtree(work / "nova", ignore_errors=True)
                threading.Event().wait(0.1)
        else:
            pytest.fail("git daemon never served the merger's repository")
        assert merger.url.startswith("git://")
        assert seen[0] == "A"
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_each_merge_gets_its_own_ref_and_old_refs_are_pruned_by_when_they_were_made(
    gerrit: FakeGerrit, tmp_path: Path
) -> None:
    """A change uploaded days ago is fast-forwarded: its commit is old, its ref new."""
    old = str(int(time.time()) - 3 * 86400)
    ENV["GIT_COMMITTER_DATE"] = ENV["GIT_AUTHOR_DATE"] = f"{old} +0000"
    try:
        a = gerrit.change("org/nova", "A", {"b.txt": "bA\n"})
    finally:
        del ENV["GIT_COMMITTER_DATE"], ENV["GIT_AUTHOR_DATE"]
    merger = Merger(tmp_path / "merger", gerrit.url)
    first, second = merger.merge([a], {}), merger.merge([a], {})
    assert first.ok and second.ok and first.ref != second.ref
    refs = git("for-each-ref", "--format=%(refname)", "refs/zuul/", cwd=merger.repo("org/nova"))
    assert set(refs.split()) == {first.ref, second.ref}
    assert abs((ref_time(first.ref) or 0) - time.time()) < 600
    # A ref made two days ago goes at the next prune; today's stay.
    stale = f"refs/zuul/master/Z{int(time.time()) - 2 * 86400:08x}{'0' * 24}"
    git("update-ref", stale, first.commits["org/nova"], cwd=merger.repo("org/nova"))
    merger._refs_pruned = 0.0
    merger._prune_old_refs()
    refs = git("for-each-ref", "--format=%(refname)", "refs/zuul/", cwd=merger.repo("org/nova"))
    assert set(refs.split()) == {first.ref, second.ref}


def test_a_project_untouched_by_this_merge_stays_at_its_tip(
    gerrit: FakeGerrit, tmp_path: Path
) -> None:
    """C was first tested on A (keystone), then on B (glance) only: its second
    build's keystone must not hold A."""
    a = gerrit.change("org/keystone", "A", {"k.txt": "kA\n"})
    b = gerrit.change("org/glance", "B", {"g.txt": "gB\n"})
    c = gerrit.change("org/nova", "C", {"c.txt": "c\n"})
    merger = Merger(tmp_path / "merger", gerrit.url)
    assert merger.merge([a, c], {}).ok
    second = merger.merge([b, c], {})
    assert second.ok, second.error
    dest = tmp_path / "ws"
    dest.mkdir()
    WorkspaceBuilder(tmp_path / "cache").prepare(
        dest,
        gerrit.url,
        ["org/nova", "org/glance", "org/keystone"],
        [b, c],
        "master",
        merged=(merger.url, second.ref),
    )
    assert git("log", "--format=%s", cwd=dest / "org/keystone").splitlines() == ["Initial"]
    assert git("log", "--format=%s", cwd=dest / "org/glance").splitlines()[0] in (
        "B",
        "Merge commit",
    )
    assert "C" in git("log", "--format=%s", cwd=dest / "org/nova").splitlines()


def test_changes_to_other_branches_of_a_queue_stay_out(gerrit: FakeGerrit, tmp_path: Path) -> None:
    """Queues are per project, not per branch. An item on stable is merged on
    stable with only stable changes, as a worker without the merger would."""
    for project in ("org/nova", "org/glance"):
        git("push", "-q", "origin", "master:refs/heads/stable", cwd=gerrit.root / f"{project}.work")
    gerrit.advance("org/nova", "master-only", {"a.txt": "x\n"})
    a = gerrit.change("org/nova", "A-master", {"b.txt": "bA\n"})
    s = gerrit.change("org/nova", "S-stable", {"s.txt": "s\n"}, parent="refs/heads/stable")
    s = ChangeRef(s.project, "stable", s.ref, s.number, s.patchset)
    g = gerrit.change("org/glance", "G-stable", {"g.txt": "gs\n"}, parent="refs/heads/stable")
    g = ChangeRef(g.project, "stable", g.ref, g.number, g.patchset)
    m2 = gerrit.change("org/nova", "M2-master", {"m.txt": "m\n"})
    merger = Merger(tmp_path / "merger", gerrit.url)

    master_item = merger.merge([a, s, m2], {})
    assert master_item.ok, master_item.error
    log = subjects(merger, "org/nova", master_item.ref)
    assert {"M2-master", "A-master", "master-only"} <= set(log) and "S-stable" not in log

    stable_item = merger.merge([a, s, g], {})
    assert stable_item.ok and stable_item.ref.startswith("refs/zuul/stable/Z")
    builder = WorkspaceBuilder(tmp_path / "cache")
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    plain.mkdir()
    merged.mkdir()
    projects = ["org/nova", "org/glance"]
    builder.prepare(plain, gerrit.url, projects, [a, s, g], "stable")
    builder.prepare(
        merged, gerrit.url, projects, [a, s, g], "stable", merged=(merger.url, stable_item.ref)
    )
    for project in projects:
        without = git("log", "--format=%s", cwd=plain / project).splitlines()
        with_merger = git("log", "--format=%s", cwd=merged / project).splitlines()
        assert [x for x in with_merger if x != "Merge commit"] == [
            x for x in without if x != "Merge commit"
        ]
    assert "A-master" not in git("log", "--format=%s", cwd=merged / "org/nova").splitlines()
