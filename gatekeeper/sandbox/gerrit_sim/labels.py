"""The labels the simulator knows, and Gerrit's submit rule over them.

Who may vote what is the project's access (``SimState.grants``); which
votes a submit needs is its submit requirements (``SimState.requirements``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    """A label's range; ``block`` is the value that vetoes submission."""

    name: str
    minimum: int
    maximum: int
    block: int


LABELS: dict[str, Label] = {
    label.name.lower(): label
    for label in (
        Label("Code-Review", -2, 2, -2),
        Label("Verified", -2, 2, -2),
        Label("Workflow", -1, 1, -1),
    )
}
# Gerrit's own order in submit records and "Patch Set N: ..." lines.
ORDER = ("Verified", "Code-Review", "Workflow")


def lookup(name: str) -> Label | None:
    """The label called ``name`` (any case), or None."""
    return LABELS.get(name.lower())


def format_vote(label: str, value: int) -> str:
    """``Code-Review+2``, ``Verified-1``, or ``-Code-Review`` for a removed vote."""
    if value == 0:
        return f"-{label}"
    return f"{label}{value:+d}"


def submit_status(
    votes: dict[str, dict[str, int]], needed: dict[str, int] | None = None
) -> list[tuple[str, str, str | None]]:
    """Per required label: (label, "OK" | "REJECT" | "NEED", deciding username).

    A label is OK with at least one vote of its needed value (``needed``,
    label -> value; default: the label's maximum) or more, and no blocking vote.
    """
    result: list[tuple[str, str, str | None]] = []
    for name in ORDER:
        label = LABELS[name.lower()]
        if needed is not None and name not in needed:
            continue
        want = label.maximum if needed is None else needed[name]
        by_user = votes.get(name, {})
        blocker = next((u for u, v in sorted(by_user.items()) if v == label.block), None)
        approver = next((u for u, v in sorted(by_user.items()) if v >= want), None)
        if blocker is not None:
            result.append((name, "REJECT", blocker))
        elif approver is not None:
            result.append((name, "OK", approver))
        else:
            result.append((name, "NEED", None))
    return result


def unmet(statuses: list[tuple[str, str, str | None]], needed: dict[str, int]) -> list[str]:
    """What each label not OK in ``statuses`` still needs, in words:
    ``needs Code-Review +2``, ``blocked by Verified -2``."""
    texts = []
    for name, status, _ in statuses:
        label = LABELS[name.lower()]
        if status == "REJECT":
            texts.append(f"blocked by {name} {label.block:+d}")
        elif status == "NEED":
            texts.append(f"needs {name} {needed.get(name, label.maximum):+d}")
    return texts
