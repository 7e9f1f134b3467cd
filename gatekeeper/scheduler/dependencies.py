"""Which changes must merge before a change: git parents and Depends-On.

A change needs every change whose patchset is its git parent and is not
merged, and every open change named by a ``Depends-On: <Change-Id>`` footer
of its commit message (in any project: that is how a nova change says it
needs a keystone one). Needs are followed transitively; a loop among them is
a :class:`DependencyCycleError`, which the scheduler reports on the change.
"""

from __future__ import annotations

from gatekeeper.errors import OperationError
from gatekeeper.gerrit.source import GerritSource
from gatekeeper.model.change import Change

__all__ = ["DependencyCycleError", "OutdatedDependencyError", "needed_changes"]


class DependencyCycleError(OperationError):
    """Changes that need each other; ``cycle`` lists them, the first again at the end."""

    def __init__(self, cycle: list[Change]) -> None:
        path = " -> ".join(f"{c.project} {c.number}" for c in cycle)
        super().__init__(f"dependency cycle: {path}")
        self.cycle = cycle


class OutdatedDependencyError(OperationError):
    """A change's git parent is an old patchset of another change: it must be rebased."""


def _direct(source: GerritSource, change: Change) -> list[Change]:
    """The open changes ``change`` names itself, parents first, without duplicates.

    :raises OutdatedDependencyError: a git parent is not its change's current patchset.
    :raises GerritError:
    """
    needed: dict[int, Change] = {}
    for number, current in change.git_parents:
        parent = source.get_change(number)
        if parent is None or parent.is_merged:
            continue
        if not current:
            raise OutdatedDependencyError(
                f"{change} is based on an outdated patchset of {parent}: rebase it"
            )
        if parent.is_open:
            needed.setdefault(parent.number, parent)
    for change_id in change.depends_on:
        for other in source.changes_with_id(change_id):
            if other.is_open and other.number != change.number:
                needed.setdefault(other.number, other)
    return list(needed.values())


def needed_changes(source: GerritSource, change: Change) -> list[Change]:
    """Every open change ``change`` needs, transitively, each after the ones it needs.

    :raises DependencyCycleError: the needs loop back.
    :raises OutdatedDependencyError: a git parent must be rebased onto.
    :raises GerritError: Gerrit could not be asked.
    """
    ordered: dict[int, Change] = {}
    known: dict[int, list[Change]] = {}

    def visit(current: Change, path: list[Change]) -> None:
        if current.number not in known:
            known[current.number] = _direct(source, current)
        for dependency in known[current.number]:
            if dependency.number == change.number or any(
                p.number == dependency.number for p in path
            ):
                start = next((i for i, p in enumerate(path) if p.number == dependency.number), 0)
                raise DependencyCycleError([*path[start:], dependency])
            if dependency.number in ordered:
                continue
            visit(dependency, [*path, dependency])
            ordered[dependency.number] = dependency

    visit(change, [change])
    return list(ordered.values())
