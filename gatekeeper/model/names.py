"""Which project names and log globs gatekeeper accepts, and why not.

Here, below both, because two rooms need the same answer: ``config`` refuses
them when a layout is validated (with file, line and key), and ``git`` and
``node`` refuse them again at run time, where a name that got past validation
in some other way would become a directory name or an rsync rule. Plain
functions, no I/O.

A project name is refused when Gerrit itself would refuse it (it would open
no repository, so no event would ever name it) and when it has a component
gatekeeper does not put in a path or a git command line. A log glob is
refused when it would reach outside the node's workspace.
"""

from __future__ import annotations

import re

__all__ = ["log_glob_problem", "project_name_problem"]

# What gatekeeper puts in a path: letters, digits, '_', '.' and '-', not
# starting with '.' or '-' (no hidden directory, no git option).
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# Characters Gerrit's repository manager refuses in a project name.
_GERRIT_REFUSES = frozenset('\\?%*:<>|$"')


def _control(text: str) -> str | None:
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
            return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None


def project_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a project's name, or None when it can."""
    if not name:
        return "is empty"
    control = _control(name)
    if control is not None:
        return f"has a control character ({control})"
    for char in name:
        if char in _GERRIT_REFUSES:
            return f"has {char!r}, which Gerrit refuses in a project name"
    if name.startswith("/"):
        return "is absolute: Gerrit project names are relative ('org/project')"
    if name.endswith("/"):
        return "ends with '/', which Gerrit drops: events would never name it so"
    parts = name.split("/")
    if "" in parts:
        return "has an empty component ('//'), which Gerrit refuses"
    if "." in parts or ".." in parts:
        return "has a '.' or '..' component, which Gerrit refuses: it would leave its directory"
    if name.endswith(".git"):
        return "ends with '.git', which Gerrit drops: events would never name it so"
    if any(part.endswith(".git") for part in parts):
        return "has a component ending in '.git', which Gerrit refuses"
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            return (
                f"has a component {part!r} that gatekeeper does not put in a path "
                "(letters, digits, '_', '.' and '-', not starting with '.' or '-')"
            )
    return None


def log_glob_problem(glob: str) -> str | None:
    """Why ``glob`` cannot be a job's ``logs:`` entry, or None when it can.

    Globs are rsync include rules relative to the node's workspace.
    """
    if not glob:
        return "is empty"
    control = _control(glob)
    if control is not None:
        return f"has a control character ({control})"
    if glob.startswith("/"):
        return "is absolute: log globs are relative to the node's workspace"
    if glob.startswith("~"):
        return "starts with '~' (a home directory): log globs are relative to the node's workspace"
    if ".." in glob.split("/"):
        return "has a '..' component: it would leave the node's workspace"
    # rsync reads "+ x", "- x" and "!" in an --include as rule syntax.
    if glob == "!" or glob.startswith(("+ ", "- ")):
        return "looks like an rsync filter rule"
    return None
