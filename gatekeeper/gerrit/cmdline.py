"""Gerrit's SSH command-line syntax: splitting and quoting.

Gerrit runs no shell for SSH commands: the exec request's string is split
into arguments by Gerrit's own splitter, whose rules are:

- a space or a tab outside quotes separates arguments;
- ``'...'`` and ``"..."`` quote; each quote character is literal inside
  the other kind of quotes;
- a backslash outside single quotes (so also inside double quotes) makes
  the next character literal; a backslash at the very end is literal;
- empty arguments are dropped (``''`` yields nothing);
- newlines, ``$``, backticks and ``;`` are ordinary characters.

:func:`quote` produces text that both this splitter and a POSIX shell
(``shlex.split``) read back unchanged, so one quoting works whether the
string reaches Gerrit directly or passes a remote shell first (an
``ssh`` wrapper script, ``sh -c``). One difference remains on purpose:
the empty string quotes as ``''``, which a shell keeps as an empty
argument but Gerrit drops; Gerrit has no way to receive an empty argument.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def split(command_line: str) -> list[str]:
    """Split ``command_line`` into arguments exactly as Gerrit's SSH daemon does."""
    args: list[str] = []
    current: list[str] = []
    in_single = False
    in_double = False
    i = 0
    n = len(command_line)
    while i < n:
        ch = command_line[i]
        i += 1
        if ch in " \t" and not (in_single or in_double):
            if current:
                args.append("".join(current))
                current = []
        elif ch == "'" and not in_double:
            in_single = not in_single
        elif ch == '"' and not in_single:
            in_double = not in_double
        elif ch == "\\" and not in_single and i < n:
            current.append(command_line[i])
            i += 1
        else:
            current.append(ch)
    if current:
        args.append("".join(current))
    return args


def quote(arg: str) -> str:
    """Quote one argument for Gerrit's splitter and for a POSIX shell alike.

    Single quotes protect everything in both syntaxes (no backslash escapes
    inside them); a single quote itself is closed, written double-quoted,
    and reopened: ``'"'"'``.
    """
    if arg == "":
        return "''"
    if _SAFE.fullmatch(arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def join(argv: list[str]) -> str:
    """Quote every argument of ``argv`` and join them with spaces."""
    return " ".join(quote(arg) for arg in argv)
