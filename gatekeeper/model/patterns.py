"""Zuul v2's URL patterns: ``{change.number}``-style placeholders.

A job's ``success-pattern`` and ``failure-pattern`` (the URL its report line
links to) and the values of its ``swift:`` targets are Python format strings
over the change, the pipeline, the job and the build, as Zuul v2.5 filled
them (``str.format(change=..., pipeline=..., job=..., build=...)``). Zuul
handed ``format`` its live objects, so any attribute worked and a typo
failed only when a build reported; here the placeholders are a fixed list,
checked when the layout loads (:func:`pattern_problem`), and filled from
plain values (:func:`fill`).

OpenStack's layouts use ``{build.parameters[LOG_PATH]}``; any build
parameter may be named that way.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from gatekeeper.model.change import Change

__all__ = [
    "PLACEHOLDERS",
    "change_values",
    "fill",
    "parameter_name",
    "pattern_problem",
    "placeholders",
]

#: Every placeholder a pattern may use, with what it becomes.
PLACEHOLDERS: dict[str, str] = {
    "change.number": "the change number (empty for a ref update)",
    "change.patchset": "the patchset number (empty for a ref update)",
    "change.project": "the project name",
    "change.branch": "the branch",
    "change.ref": "the ref tested (refs/changes/..., or the updated ref)",
    "change.refspec": "a change's refs/changes/... ref (empty for a ref update)",
    "change.url": "the change's Gerrit URL",
    "change.oldrev": "a ref update's old revision",
    "change.newrev": "a ref update's new revision",
    "pipeline.name": "the pipeline",
    "job.name": "the job",
    "build.uuid": "the build's UUID",
    "build.number": "the build's number among its job's builds (1, 2, ...), as Jenkins counted",
    "build.url": "the build's log URL",
    "build.result": "the build's result (SUCCESS, FAILURE, ...)",
    "build.parameters[NAME]": "the build parameter NAME (e.g. LOG_PATH, ZUUL_UUID)",
}

_PARAMETER = re.compile(r"build\.parameters\[([A-Za-z_][A-Za-z0-9_]*)\]")
_FORMATTER = string.Formatter()


def placeholders(pattern: str) -> list[str]:
    """The placeholders ``pattern`` uses, in order.

    :raises ValueError: it is not a format string (an unmatched brace).
    """
    return [field for _, field, _, _ in _FORMATTER.parse(pattern) if field is not None]


def pattern_problem(pattern: str, allowed: frozenset[str] | None = None) -> str | None:
    """Why ``pattern`` cannot be filled, or None; ``allowed`` narrows the
    placeholders (default: every one of :data:`PLACEHOLDERS`)."""
    known = allowed if allowed is not None else frozenset(PLACEHOLDERS)
    try:
        parts = list(_FORMATTER.parse(pattern))
    except ValueError as exc:
        return f"not a pattern: {exc} (write a literal brace as '{{{{' or '}}}}')"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if spec or conversion:
            return f"'{{{field}}}': gatekeeper fills plain placeholders, without '!' or ':'"
        generic = "build.parameters[NAME]" if _PARAMETER.fullmatch(field) else field
        if generic not in known:
            names = ", ".join("{" + name + "}" for name in sorted(known))
            return f"unknown placeholder '{{{field}}}' (known: {names})"
    return None


def fill(pattern: str, value: Callable[[str], str]) -> str:
    """``pattern`` with each placeholder replaced by ``value(placeholder)``.

    ``build.parameters[X]`` is asked for as written. The pattern must have
    passed :func:`pattern_problem`.
    """
    out: list[str] = []
    for literal, field, _, _ in _FORMATTER.parse(pattern):
        out.append(literal)
        if field is not None:
            out.append(value(field))
    return "".join(out)


def change_values(change: Change) -> dict[str, str]:
    """The ``change.*`` placeholders' values for ``change``."""
    return {
        "change.number": "" if change.is_ref else str(change.number),
        "change.patchset": "" if change.is_ref else str(change.patchset),
        "change.project": change.project,
        "change.branch": change.branch,
        "change.ref": change.ref,
        "change.refspec": "" if change.is_ref else change.ref,
        "change.url": change.url,
        "change.oldrev": change.old_rev,
        "change.newrev": change.new_rev,
    }


def parameter_name(placeholder: str) -> str | None:
    """``build.parameters[LOG_PATH]`` -> ``LOG_PATH``; None for another placeholder."""
    match = _PARAMETER.fullmatch(placeholder)
    return match.group(1) if match else None
