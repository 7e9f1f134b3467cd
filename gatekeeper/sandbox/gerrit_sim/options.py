"""How Gerrit's SSH commands read their command lines (args4j's rules), for
the commands the simulator answers."""

from __future__ import annotations

from gatekeeper.errors import GerritError


class UsageError(GerritError):
    """The command line is not valid for the command."""


def operand(argv: list[str], i: int, name: str, inline: str | None) -> tuple[str, int]:
    """The value of option ``name``: what followed its ``=`` (``inline``),
    else the next argument, ``argv[i]``; and the index of the argument after it.

    :raises UsageError: the command line ends where the value should be.
    """
    if inline is not None:
        return inline, i
    if i < len(argv):
        return argv[i], i + 1
    raise UsageError(f'Option "{name}" takes an operand')
