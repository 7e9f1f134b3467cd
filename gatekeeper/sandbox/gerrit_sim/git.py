"""The simulator's bare repositories, driven by the real ``git`` binary.

Every call passes an argument list (never a shell string) and names the
repository with ``--git-dir``; commit text never reaches a shell.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.errors import GerritError

log = logging.getLogger(__name__)

ZERO = "0" * 40
CHANGE_ID_RE = re.compile(r"^Change-Id:[ \t]*(I[0-9a-f]{40})[ \t]*$", re.MULTILINE)
SIM_IDENT = {
    "GIT_AUTHOR_NAME": "Gerrit Code Review",
    "GIT_AUTHOR_EMAIL": "gerrit@sim.invalid",
    "GIT_COMMITTER_NAME": "Gerrit Code Review",
    "GIT_COMMITTER_EMAIL": "gerrit@sim.invalid",
}

# Written into every bare repository. It only compares ref names (the one
# piece of client text it sees is a ref name, always inside double quotes)
# and greps commit messages for a Change-Id footer; nothing is evaluated.
PRE_RECEIVE_HOOK = r"""#!/bin/sh
# gatekeeper Gerrit simulator: accept only pushes for review.
status=0
while read -r old new ref; do
  case "$ref" in
    refs/for/*)
      branch="${ref#refs/for/}"
      branch="${branch%%%*}"
      if ! git rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
        echo "error: branch refs/heads/$branch not found" >&2
        status=1
        continue
      fi
      for commit in $(git rev-list "$new" --not --branches); do
        if ! git cat-file commit "$commit" | grep -q '^Change-Id: *I[0-9a-f]\{40\} *$'; then
          echo "error: $commit: missing Change-Id in commit message footer" >&2
          status=1
        fi
      done
      ;;
    *)
      echo "error: prohibited push to $ref: push to refs/for/<branch> for review" >&2
      status=1
      ;;
  esac
done
exit $status
"""


# git's --name-status letters as Gerrit names them (renames are not detected here).
_CHANGE_TYPES = {"A": "ADDED", "M": "MODIFIED", "D": "DELETED", "T": "MODIFIED"}


@dataclass(frozen=True)
class CommitInfo:
    """What the simulator needs to know about one pushed commit."""

    sha: str
    parents: list[str]
    author_name: str
    author_email: str
    message: str
    insertions: int
    deletions: int
    #: (path, Gerrit's change type, insertions, deletions), in path order.
    files: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def change_id(self) -> str:
        """The last ``Change-Id:`` footer, or one derived from the sha when missing."""
        found = CHANGE_ID_RE.findall(self.message)
        return found[-1] if found else "I" + self.sha


class Repo:
    """One bare repository under the simulator's root; used by whichever
    server thread holds the project's lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        """Run ``git --git-dir=<repo> args...`` and return its stdout.

        :raises GerritError: git exited non-zero.
        """
        full_env = dict(os.environ)
        full_env.pop("GIT_DIR", None)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            ["git", f"--git-dir={self.path}", *args],
            input=stdin,
            capture_output=True,
            env=full_env,
            check=False,
        )
        if proc.returncode != 0:
            raise GerritError(
                f"git {args[0]} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode("utf-8", errors="surrogateescape")

    def init(self, files: dict[str, str | bytes], branch: str) -> None:
        """Create the bare repository with one commit holding ``files``.

        :raises GerritError: git failed.
        """
        self.path.mkdir(parents=True, exist_ok=False)
        self.git("init", "--bare", "--quiet", f"--initial-branch={branch}")
        self.git("config", "receive.denyDeletes", "true")
        hook = self.path / "hooks" / "pre-receive"
        hook.write_text(PRE_RECEIVE_HOOK)
        hook.chmod(0o755)
        entries: list[str] = []
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            blob = self.git("hash-object", "-w", "--stdin", stdin=data).strip()
            mode = "100755" if name.endswith(".sh") else "100644"
            entries.append(f"{mode} blob {blob}\t{name}")
        tree = self._mktree(entries)
        commit = self.git("commit-tree", tree, "-m", "Initial commit", env=SIM_IDENT).strip()
        self.git("update-ref", f"refs/heads/{branch}", commit, ZERO)

    def _mktree(self, entries: list[str]) -> str:
        # Nested paths need one tree per directory; build bottom-up.
        direct: list[str] = []
        subdirs: dict[str, list[str]] = {}
        for entry in entries:
            meta, name = entry.split("\t", 1)
            if "/" in name:
                head, rest = name.split("/", 1)
                subdirs.setdefault(head, []).append(f"{meta}\t{rest}")
            else:
                direct.append(entry)
        for name, sub in subdirs.items():
            direct.append(f"040000 tree {self._mktree(sub)}\t{name}")
        text = "".join(f"{e}\n" for e in direct)
        return self.git("mktree", stdin=text.encode()).strip()

    def rev(self, ref: str) -> str | None:
        """The sha a ref points at, or None."""
        try:
            return self.git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}").strip()
        except GerritError:
            return None

    def refs(self, prefix: str) -> dict[str, str]:
        """Map of ref name to sha for refs under ``prefix``."""
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        found: dict[str, str] = {}
        for line in out.splitlines():
            name, _, sha = line.partition(" ")
            found[name] = sha
        return found

    def new_commits(self, tip: str, branch: str) -> list[str]:
        """Commits reachable from ``tip`` and not from ``branch``, oldest first."""
        out = self.git(
            "rev-list", "--reverse", "--topo-order", tip, "--not", f"refs/heads/{branch}"
        )
        return out.split()

    def commits_between(self, tip: str, base: str) -> list[str]:
        """Commits reachable from ``tip`` and not from ``base``."""
        return self.git("rev-list", tip, "--not", base).split()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = subprocess.run(
            ["git", f"--git-dir={self.path}", "merge-base", "--is-ancestor", ancestor, descendant],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def commit_info(self, sha: str) -> CommitInfo:
        """Read one commit.

        :raises GerritError: git failed.
        """
        out = self.git("show", "-s", "--format=%H%x00%P%x00%an%x00%ae%x00%B", sha)
        full, parents, name, email, message = out.split("\x00", 4)
        # %B adds one newline after the raw message; Gerrit's commitMessage
        # is the raw message, which git ends with exactly one newline.
        message = message[:-1] if message.endswith("\n\n") else message
        parent_list = parents.split()
        insertions = deletions = 0
        files: list[tuple[str, str, int, int]] = []
        if parent_list:
            counts: dict[str, tuple[int, int]] = {}
            stat = self.git("diff", "--no-renames", "--numstat", "-z", parent_list[0], full)
            for record in stat.split("\0"):
                if not record:
                    continue
                added, removed, path = record.split("\t", 2)
                if added != "-":
                    counts[path] = (int(added), int(removed))
                    insertions += int(added)
                    deletions += int(removed)
            status = self.git("diff", "--no-renames", "--name-status", "-z", parent_list[0], full)
            fields = status.split("\0")
            for kind, path in zip(fields[0::2], fields[1::2], strict=False):
                if path:
                    plus, minus = counts.get(path, (0, 0))
                    files.append((path, _CHANGE_TYPES.get(kind[:1], "MODIFIED"), plus, minus))
        return CommitInfo(
            full, parent_list, name, email, message, insertions, deletions, sorted(files)
        )

    def tree(self, sha: str) -> str:
        return self.git("rev-parse", f"{sha}^{{tree}}").strip()

    def patchset_kind(
        self, prior: CommitInfo, new: CommitInfo, with_message_update: bool = True
    ) -> str:
        """The kind of patch set ``new`` is after ``prior``, as Gerrit 3.x
        defines them (json.txt, patchSet ``kind``):

        - NO_CHANGE: same tree, same parent trees, same commit message;
        - NO_CODE_CHANGE: same tree and parent trees, another message;
        - MERGE_FIRST_PARENT_UPDATE: both merges, only the first parent moved,
          the same message, and merging the new parents cleanly gives the new tree;
        - TRIVIAL_REBASE: another parent, and picking ``prior`` onto it
          cleanly gives exactly the new tree; same message;
        - TRIVIAL_REBASE_WITH_MESSAGE_UPDATE: the same with another message
          (3.x only: ``with_message_update``; 2.13 calls that REWORK);
        - REWORK: anything else.

        :raises GerritError: git failed.
        """
        same_message = prior.message == new.message
        new_tree = self.tree(new.sha)
        prior_parent_trees = [self.tree(p) for p in prior.parents]
        new_parent_trees = [self.tree(p) for p in new.parents]
        if self.tree(prior.sha) == new_tree and prior_parent_trees == new_parent_trees:
            return "NO_CHANGE" if same_message else "NO_CODE_CHANGE"
        if len(prior.parents) > 1 or len(new.parents) > 1:
            first_moved_only = (
                len(prior.parents) == len(new.parents)
                and prior.parents[1:] == new.parents[1:]
                and prior.parents[0] != new.parents[0]
            )
            if first_moved_only and same_message and len(new.parents) == 2:
                merged = self._merged_tree(new.parents[0], new.parents[1])
                if merged == new_tree:
                    return "MERGE_FIRST_PARENT_UPDATE"
            return "REWORK"
        if len(prior.parents) != 1 or len(new.parents) != 1 or prior.parents == new.parents:
            # Same parent, another tree: the code changed.
            return "REWORK"
        picked = self._picked_tree(prior, new.parents[0])
        if picked != new_tree:
            return "REWORK"
        if same_message:
            return "TRIVIAL_REBASE"
        return "TRIVIAL_REBASE_WITH_MESSAGE_UPDATE" if with_message_update else "REWORK"

    def _merged_tree(self, ours: str, theirs: str) -> str | None:
        """The tree of a clean merge of two commits, or None on a conflict."""
        proc = subprocess.run(
            ["git", f"--git-dir={self.path}", "merge-tree", "--write-tree", ours, theirs],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().split("\n", 1)[0].strip()

    def _picked_tree(self, commit: CommitInfo, onto: str) -> str | None:
        """The tree of ``commit`` cherry-picked onto ``onto``, or None on a conflict.

        When ``commit``'s parent is an ancestor of ``onto`` (a rebase onto a
        branch that moved on), ``merge-tree`` of the two finds that parent as
        the merge base and merges contents. Otherwise (git 2.39 has no
        ``--merge-base``) a three-way index merge of whole files: a file both
        sides changed counts as a conflict, so such a rebase is a REWORK here.
        """
        base = commit.parents[0]
        if self.is_ancestor(base, onto):
            return self._merged_tree(onto, commit.sha)
        with tempfile.TemporaryDirectory() as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            try:
                self.git("read-tree", "-i", "-m", "--aggressive", base, onto, commit.sha, env=env)
                return self.git("write-tree", env=env).strip()
            except GerritError:
                return None

    def merge(self, ours: str, theirs: str, message: str) -> str:
        """Create a merge commit of ``theirs`` into ``ours``; return its sha.

        :raises GerritError: the merge conflicts, or git failed.
        """
        proc = subprocess.run(
            ["git", f"--git-dir={self.path}", "merge-tree", "--write-tree", ours, theirs],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 1:
            raise GerritError("merge conflict")
        if proc.returncode != 0:
            raise GerritError(f"git merge-tree failed: {proc.stderr.decode(errors='replace')}")
        tree = proc.stdout.decode().split("\n", 1)[0].strip()
        return self.git(
            "commit-tree", tree, "-p", ours, "-p", theirs, "-m", message, env=SIM_IDENT
        ).strip()

    def update_refs(self, updates: list[tuple[str, str, str]]) -> None:
        """Apply ``(ref, new, old)`` updates atomically ("" new deletes).

        :raises GerritError: a ref moved meanwhile, or git failed.
        """
        lines = []
        for ref, new, old in updates:
            if new:
                lines.append(f"update {ref} {new} {old}\n")
            else:
                lines.append(f"delete {ref} {old}\n")
        self.git("update-ref", "--stdin", stdin="".join(lines).encode())
