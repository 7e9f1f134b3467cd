"""The build's git workspace: each project cloned, the queued changes merged in.

A worker keeps one bare mirror per project under its cache directory so a
build clones locally instead of over the network. A mirror holds branches
and tags only (one ``git fetch --prune`` per build): Gerrit's
``refs/changes/*`` run to hundreds of thousands on a busy project, and only
the changes under test are fetched from Gerrit, into the build's workspace.

Every repository is made with an empty template: copying git's sample hooks
costs more than the clone itself on a small repository, and hooks never run
here (``core.hooksPath=/dev/null``). Workspace clones hard-link the mirror's
objects, which git never modifies in place; the workspace is copied to the
node (rsync makes new files there) and removed, so no job writes through a
link into the cache.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gatekeeper.errors import MergeConflictError, WorkspaceError
from gatekeeper.git.refs import (
    ChangeRef,
    check_branch,
    check_project_name,
    check_ref,
    check_sha,
    join_url,
    project_dir,
)
from gatekeeper.git.runner import Git

log = logging.getLogger(__name__)

# What a mirror holds: branches and tags, pruned as Gerrit deletes them.
_MIRROR_REFSPECS = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]


@dataclass(frozen=True)
class RepoState:
    """Where a project's workspace ended up after the merges."""

    project: str
    branch: str
    head_sha: str
    subject: str


class WorkspaceBuilder:
    """Prepares build workspaces from a shared mirror cache.

    Shared by every worker thread of a process (each calls :meth:`prepare`);
    a per-project lock, also held on a lock file so several worker processes
    may share one cache, serialises updates of a mirror.
    """

    def __init__(self, cache_dir: Path, git_env: dict[str, str] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.git = Git(git_env)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _git(
        self,
        args: list[str],
        cwd: Path | None = None,
        auto_gc: bool = False,
    ) -> str:
        """:raises WorkspaceError: see :meth:`Git.run`."""
        return self.git.run(args, cwd, auto_gc)

    def _lock(self, project: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(project, threading.Lock())

    def mirror_path(self, project: str) -> Path:
        """The cache directory of ``project`` (one flat name, no slashes)."""
        check_project_name(project)
        return self.cache_dir / (quote(project, safe="") + ".git")

    def _update_mirror(self, git_url: str, project: str) -> Path:
        """Create or refresh the mirror. Caller holds the project's lock."""
        mirror = self.mirror_path(project)
        fetch = ["fetch", "-q", "--prune", "--", join_url(git_url, project), *_MIRROR_REFSPECS]
        if (mirror / "HEAD").exists():
            log.debug("updating mirror of %s", project)
            self._git(fetch, cwd=mirror, auto_gc=True)
            return mirror
        log.info("cloning mirror of %s", project)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Fill it beside its place and rename, so an interrupted fetch never
        # looks like a mirror.
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.cache_dir))
        try:
            self._git(["init", "-q", "--bare", "--template=", str(tmp / "m")])
            self._git(fetch, cwd=tmp / "m")
            shutil.rmtree(mirror, ignore_errors=True)
            (tmp / "m").rename(mirror)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return mirror

    def _clone_from_cache(self, git_url: str, project: str, branch: str, dest: Path) -> str:
        """Clone ``project`` at ``branch`` (or master) into ``dest``; return the branch.

        :raises WorkspaceError: the project has neither branch, or git failed.
        """
        lock_file = self.cache_dir / (quote(project, safe="") + ".lock")
        with self._lock(project):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with open(lock_file, "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                mirror = self._update_mirror(git_url, project)
                checkout = branch
                if not self._branch_exists(mirror, branch):
                    if branch == "master" or not self._branch_exists(mirror, "master"):
                        raise WorkspaceError(f"{project} has neither branch {branch} nor master")
                    log.info("%s has no branch %s; using master", project, branch)
                    checkout = "master"
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._git(
                    [
                        "clone",
                        "-q",
                        "--template=",
                        "--branch",
                        checkout,
                        "--",
                        str(mirror),
                        str(dest),
                    ]
                )
        return checkout

    def _branch_exists(self, mirror: Path, branch: str) -> bool:
        try:
            self._git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], mirror)
        except WorkspaceError:
            return False
        return True

    def prepare(
        self,
        dest: Path,
        git_url: str,
        projects: list[str],
        changes: list[ChangeRef],
        branch: str,
        revisions: dict[str, str] | None = None,
        merged: tuple[str, str] | None = None,
    ) -> list[RepoState]:
        """Clone ``projects`` into ``dest/<project>`` on ``branch`` and merge ``changes``.

        With ``merged`` (the merger's URL and ref, ``ZUUL_URL`` and a
        ``refs/zuul/...`` ``ZUUL_REF``), the merging was done already: each
        project is checked out at that ref fetched from ``<url>/<project>``,
        and a project none of ``changes`` belongs to stays at its branch tip.

        A project without ``branch`` is checked out on master. A change is
        merged, in the order given, into its project when it targets the
        branch checked out there (a change to another branch does not belong
        in this tree). A project in ``revisions`` is checked out at that
        revision instead (a ref update: the new tip of a branch, a tag).

        :raises WorkspaceError: a name is unsafe, git failed, or a change
            does not merge (the message names the change).
        """
        check_branch(branch)
        for project in projects:
            check_project_name(project)
        for change in changes:
            check_project_name(change.project)
            check_ref(change.ref)
        revisions = revisions or {}
        for revision in revisions.values():
            check_sha(revision)
        if merged is not None:
            check_ref(merged[1])
        # Projects are independent of each other: prepare them in parallel,
        # since each costs a round trip to Gerrit (cache update, change fetch).
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(projects)))) as pool:
            futures = [
                pool.submit(
                    self._prepare_project,
                    dest,
                    git_url,
                    project,
                    changes,
                    branch,
                    revisions.get(project, ""),
                    merged,
                )
                for project in projects
            ]
            return [future.result() for future in futures]

    def _prepare_project(
        self,
        dest: Path,
        git_url: str,
        project: str,
        changes: list[ChangeRef],
        branch: str,
        revision: str = "",
        merged: tuple[str, str] | None = None,
    ) -> RepoState:
        """:raises WorkspaceError:"""
        repo = project_dir(dest, project)
        checkout = self._clone_from_cache(git_url, project, branch, repo)
        # Jobs that fetch from origin should reach Gerrit, not this host's cache.
        self._git(["remote", "set-url", "origin", join_url(git_url, project)], repo)
        if revision:
            try:
                self._git(["checkout", "-q", "--detach", f"{revision}^{{commit}}"], repo)
            except WorkspaceError as exc:
                raise WorkspaceError(f"{project} has no revision {revision}: {exc}") from exc
        if merged is not None:
            self._checkout_merged(repo, project, checkout, merged, changes)
        else:
            for change in changes:
                if change.project == project and change.branch == checkout:
                    self._merge(repo, git_url, change)
        out = self._git(["log", "-1", "--format=%H%x00%s"], repo).rstrip("\n")
        sha, _, subject = out.partition("\0")
        return RepoState(project, checkout, sha, subject)

    def _checkout_merged(
        self,
        repo: Path,
        project: str,
        branch: str,
        merged: tuple[str, str],
        changes: list[ChangeRef],
    ) -> None:
        """Put ``repo`` on the merger's ref, keeping the branch's name.

        :raises WorkspaceError: the ref is missing in a project that has changes.
        """
        url, ref = merged
        try:
            self._git(["fetch", "-q", "--", join_url(url, project), ref], repo)
        except WorkspaceError as exc:
            if any(c.project == project for c in changes):
                raise WorkspaceError(
                    f"could not fetch {ref} of {project} from the merger: {exc}"
                ) from exc
            return  # untouched by the changes under test: the branch tip is right
        self._git(["checkout", "-q", "-B", branch, "FETCH_HEAD"], repo)

    def _merge(self, repo: Path, git_url: str, change: ChangeRef) -> None:
        """:raises WorkspaceError: the change could not be fetched or merged."""
        log.debug("merging %s into %s", change, repo)
        try:
            self._git(["fetch", "-q", "--", join_url(git_url, change.project), change.ref], repo)
        except WorkspaceError as exc:
            raise WorkspaceError(f"could not fetch {change}: {exc}") from exc
        try:
            self._git(["merge", "--no-edit", "--ff", "FETCH_HEAD"], repo)
        except WorkspaceError as exc:
            try:
                self._git(["merge", "--abort"], repo)
            except WorkspaceError:
                log.debug("merge --abort failed in %s", repo)
            raise MergeConflictError(
                f"merge conflict: {change} does not merge", str(change)
            ) from exc
