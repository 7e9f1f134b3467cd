"""Names that reach git: checked before use, and the changes a build lists.

Project names become directory names and arguments to git, and refs and
branches arrive from Gerrit events and build parameters, so each is held to
a narrow pattern before it is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.errors import WorkspaceError
from gatekeeper.model.names import project_name_problem
from gatekeeper.model.outside import shown

_REF = re.compile(r"refs/[A-Za-z0-9._/-]+")
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")
_CHANGE_REF = re.compile(r"refs/changes/\d+/(\d+)/(\d+)")
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class ChangeRef:
    """One change to merge into the workspace, as ZUUL_CHANGES lists it."""

    project: str
    branch: str
    ref: str
    number: int = 0
    patchset: int = 0

    def __str__(self) -> str:
        if self.number:
            return f"{self.project} {self.number},{self.patchset}"
        return f"{self.project} {self.ref}"


def check_project_name(project: str) -> None:
    """:raises WorkspaceError: ``project`` could escape its directory or pass as an option
    (:func:`gatekeeper.model.names.project_name_problem`: what validate refuses)."""
    problem = project_name_problem(project)
    if problem is not None:
        raise WorkspaceError(f"refusing unsafe project name '{shown(project, 100)}': {problem}")


def project_dir(root: Path, project: str) -> Path:
    """``root/<project>``, for a project name that is safe and a directory
    that is inside ``root`` even after symlinks are followed.

    :raises WorkspaceError: the name is unsafe, or the directory leaves ``root``.
    """
    check_project_name(project)
    path = root.joinpath(*project.split("/"))
    if not path.resolve().is_relative_to(root.resolve()):
        raise WorkspaceError(f"the directory of {project} leaves {root} (a symlink?)")
    return path


def check_ref(ref: str) -> None:
    if not _REF.fullmatch(ref) or ".." in ref or ref.endswith((".lock", "/", ".")):
        raise WorkspaceError(f"refusing unsafe ref {ref!r}")


def check_branch(branch: str) -> None:
    if not _BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/", ".")):
        raise WorkspaceError(f"refusing unsafe branch name {branch!r}")


def check_sha(revision: str) -> None:
    """:raises WorkspaceError: ``revision`` is not a full, lower-case sha."""
    if not _SHA.fullmatch(revision):
        raise WorkspaceError(f"refusing revision {revision!r}: not a full sha")


def parse_zuul_changes(value: str) -> list[ChangeRef]:
    """Turn ``project:branch:ref^project:branch:ref`` into ChangeRefs, in order.

    :raises WorkspaceError: an entry is not ``project:branch:ref``.
    """
    changes = []
    for entry in value.split("^"):
        if not entry.strip():
            continue
        parts = entry.strip().split(":")
        if len(parts) != 3 or not all(parts):
            raise WorkspaceError(f"malformed ZUUL_CHANGES entry {entry!r}")
        project, branch, ref = parts
        match = _CHANGE_REF.fullmatch(ref)
        number, patchset = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        changes.append(ChangeRef(project, branch, ref, number, patchset))
    return changes


def join_url(git_url: str, project: str) -> str:
    return f"{git_url.rstrip('/')}/{project}"
