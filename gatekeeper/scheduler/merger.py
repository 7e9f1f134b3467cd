"""The merger: the speculative state a gate item is tested in, made once, as a ref.

For a gate item the merger takes every project its changes (its own and
those ahead of it in the queue) belong to, checks out the branch tip, applies
the changes in queue order with the project's ``merge-mode``, and publishes
the result as ``refs/zuul/<branch>/Z<id>`` in its own repository of that
project. Workers clone the branch from Gerrit as usual, then fetch that ref
from ``ZUUL_URL/<project>``: every build of the item tests exactly the same
commits, and a change that does not merge is found here, before a node is
spent on it.

Merges run on one thread of their own (:class:`MergeQueue`), in the order
asked, because they share one work tree per project; the scheduler thread
only submits requests and receives results.

Modes, as Zuul v2 named them:

- ``merge``: ``git merge`` (a fast-forward when possible);
- ``merge-resolve``: ``git merge -s resolve``, the default;
- ``cherry-pick``: the change's commit re-applied on top.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.errors import WorkspaceError
from gatekeeper.git.refs import (
    ChangeRef,
    check_branch,
    check_project_name,
    check_ref,
    join_url,
    project_dir,
)
from gatekeeper.git.runner import Git
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

# refs/zuul/* older than this are deleted (no build still needs them).
KEEP_REFS = 24 * 3600.0


@dataclass
class MergeResult:
    """What a merge request came to."""

    #: The published ref, the same name in every repository it touched ('' on failure).
    ref: str = ""
    #: Project -> the commit the ref points at.
    commits: dict[str, str] = field(default_factory=dict)
    #: The change that did not merge (``project number,patchset``), if one did not.
    conflict: str = ""
    #: Why it failed (a conflict, or git itself).
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.ref)


class Merger:
    """Merges changes and publishes the results under ``root``.

    ``root/<project>`` is a repository per project (with a work tree, used
    only by the merger); its ``file://`` URL (:attr:`url`) is what builds
    get as ``ZUUL_URL`` unless the site serves ``root`` some other way.
    """

    def __init__(
        self,
        root: Path,
        git_url: str,
        git_env: dict[str, str] | None = None,
        url: str = "",
    ) -> None:
        self.root = Path(root)
        self.git_url = git_url
        self._url = url
        self._git_runner = Git(git_env)
        self._refs_pruned = 0.0

    @property
    def url(self) -> str:
        """The base URL builds fetch ``<url>/<project>`` from."""
        return self._url or self.root.resolve().as_uri()

    def _git(self, args: list[str], cwd: Path, stdin: str | None = None) -> str:
        return self._git_runner.run(args, cwd, stdin=stdin)

    def repo(self, project: str) -> Path:
        return project_dir(self.root, project)

    def merge(
        self,
        changes: list[ChangeRef],
        modes: dict[str, str],
        branch: str = "",
        name: str = "",
    ) -> MergeResult:
        """Apply ``changes`` in order, per project, onto the tip of ``branch``
        (the item's; its change is the last one, and gives it by default).

        As a worker checks projects out, a project without ``branch`` is
        merged on master, and only the changes to the branch a project is
        merged on belong in it: a change to another branch of a project in
        the same queue does not. ``modes`` maps a project to its merge mode
        (default merge-resolve). The ref is ``refs/zuul/<branch>/Z<name>``;
        ``name`` defaults to a new unique one, which starts with the time in
        hex so old refs can be pruned by name. Never raises: a failure is in
        the result.
        """
        if not changes:
            return MergeResult(error="nothing to merge")
        branch = branch or changes[-1].branch
        ref = f"refs/zuul/{branch}/Z{name or new_ref_name()}"
        try:
            check_branch(branch)
            for change in changes:
                check_project_name(change.project)
                check_ref(change.ref)
                check_branch(change.branch)
        except WorkspaceError as exc:
            return MergeResult(error=str(exc))
        result = MergeResult()
        projects = list(dict.fromkeys(c.project for c in changes))
        published: list[tuple[Path, str]] = []
        for project in projects:
            try:
                mine = [c for c in changes if c.project == project]
                repo, target = self._fresh(project, branch, mine)
                own = [c for c in mine if c.branch == target]
                if not own:
                    continue  # its changes are to another branch: the tip is right
                for change in own:
                    self._apply(repo, change, modes.get(project, "merge-resolve"))
                self._git(
                    ["update-ref", "--stdin"],
                    repo,
                    stdin="".join(
                        f"delete {local}\n"
                        for local in dict.fromkeys(_local_ref(c.ref) for c in mine)
                    ),
                )
                sha = self._git(["rev-parse", "HEAD"], repo).strip()
                self._git(["update-ref", ref, sha], repo)
            except _Conflict as exc:
                result = MergeResult(conflict=exc.change, error=str(exc))
                break
            except WorkspaceError as exc:
                result = MergeResult(error=f"{project}: {exc}")
                break
            published.append((repo, ref))
            result.commits[project] = sha
        if result.error:
            for repo, ref in published:
                self._delete_ref(repo, ref)
            return result
        result.ref = ref
        self._prune_old_refs()
        return result

    def _fresh(self, project: str, branch: str, changes: list[ChangeRef]) -> tuple[Path, str]:
        """The project's work tree at the tip of ``branch`` (or master, if it has
        no such branch), fetched now with ``changes`` in the same round trip
        (each under :func:`_local_ref`); and which branch that is."""
        repo = self.repo(project)
        if not (repo / ".git").exists():
            tmp = repo.with_name(repo.name + ".new")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self._git(["init", "-q", "--template=", str(tmp)], self.root)
            self._git(["remote", "add", "origin", join_url(self.git_url, project)], tmp)
            tmp.rename(repo)
        wanted = [f"+{c.ref}:{_local_ref(c.ref)}" for c in changes]
        try:
            self._git(
                [
                    "fetch",
                    "-q",
                    "--prune",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                    *wanted,
                ],
                repo,
            )
        except WorkspaceError as exc:
            names = ", ".join(str(c) for c in changes)
            raise WorkspaceError(f"could not fetch the branches and {names}: {exc}") from exc
        target = branch
        try:
            self._git(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"], repo)
        except WorkspaceError:
            target = "master"
        self._git(["checkout", "-q", "-f", "--detach", f"refs/remotes/origin/{target}"], repo)
        self._git(["clean", "-q", "-f", "-d", "-x"], repo)
        return repo, target

    def _apply(self, repo: Path, change: ChangeRef, mode: str) -> None:
        """:raises _Conflict: the change does not apply; the tree is left clean."""
        fetched = _local_ref(change.ref)
        if mode == "cherry-pick":
            command = ["cherry-pick", "--allow-empty", "--keep-redundant-commits", fetched]
            abort = ["cherry-pick", "--abort"]
        elif mode == "merge":
            command = ["merge", "--no-edit", "--ff", fetched]
            abort = ["merge", "--abort"]
        else:
            command = ["merge", "--no-edit", "--ff", "-s", "resolve", fetched]
            abort = ["merge", "--abort"]
        try:
            self._git(command, repo)
        except WorkspaceError as exc:
            try:
                self._git(abort, repo)
            except WorkspaceError:
                self._git(["reset", "-q", "--hard"], repo)
            raise _Conflict(str(change), f"{change} does not merge ({mode})") from exc

    def _delete_ref(self, repo: Path, ref: str) -> None:
        try:
            self._git(["update-ref", "-d", ref], repo)
        except WorkspaceError as exc:
            log.warning("could not delete %s in %s: %s", ref, repo, shown(exc))

    def _prune_old_refs(self) -> None:
        """Delete refs/zuul/* made more than :data:`KEEP_REFS` ago, once an hour.

        A ref's age is read from its name (:func:`new_ref_name`), not from the
        commit it points at: a change uploaded last month and fast-forwarded
        today has an old commit and a new ref.
        """
        now = time.time()
        if now - self._refs_pruned < 3600:
            return
        self._refs_pruned = now
        if not self.root.exists():
            return
        for git_dir in self.root.rglob(".git"):
            repo = git_dir.parent
            try:
                out = self._git(["for-each-ref", "--format=%(refname)", "refs/zuul/"], repo)
            except WorkspaceError:
                continue
            for ref in out.splitlines():
                made = ref_time(ref)
                if made is not None and now - made > KEEP_REFS:
                    self._delete_ref(repo, ref)


def _local_ref(ref: str) -> str:
    """Where a fetched change ref is kept while it is merged: ``refs/changes/...``
    becomes ``refs/gatekeeper/changes/...``."""
    return "refs/gatekeeper/" + ref.removeprefix("refs/")


def new_ref_name() -> str:
    """A unique ref id whose first 8 hex digits are the time it was made."""
    return f"{int(time.time()):08x}{uuid.uuid4().hex[:24]}"


def ref_time(ref: str) -> float | None:
    """When a ``refs/zuul/.../Z<id>`` made by :func:`new_ref_name` was made."""
    _, _, tail = ref.rpartition("/Z")
    try:
        return float(int(tail[:8], 16)) if len(tail) == 32 else None
    except ValueError:
        return None


class _Conflict(Exception):  # noqa: N818 - internal signal, never leaves this module
    def __init__(self, change: str, message: str) -> None:
        super().__init__(message)
        self.change = change


@dataclass
class MergeRequest:
    changes: list[ChangeRef]
    modes: dict[str, str]
    done: Callable[[MergeResult], None]
    #: The item's branch; the ref is named after it.
    branch: str = ""


class MergeQueue:
    """Runs merge requests on one thread, in order; ``done`` is called on it."""

    def __init__(self, merger: Merger) -> None:
        self.merger = merger
        self._requests: queue.Queue[MergeRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="merger", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the merge under way, drop the rest (a restarted scheduler asks again)."""
        self._stopping.set()
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, request: MergeRequest) -> None:
        self._requests.put(request)

    def _run(self) -> None:
        while True:
            request = self._requests.get()
            if request is None or self._stopping.is_set():
                return
            started = time.monotonic()
            try:
                result = self.merger.merge(request.changes, request.modes, request.branch)
            except Exception as exc:  # a bug here must not stop every later merge
                log.exception("merge of %s failed", ", ".join(map(str, request.changes)))
                result = MergeResult(error=f"merger error: {exc}")
            log.debug(
                "merged %d changes in %.0f ms: %s",
                len(request.changes),
                (time.monotonic() - started) * 1000,
                result.ref or result.error,
            )
            try:
                request.done(result)
            except Exception:
                log.exception("merge result handler failed")
