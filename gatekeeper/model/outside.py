"""Text that came from outside, made safe to put in a log line or a terminal.

A commit message, a comment, a project name, an operator's argument or a
stream line is written by someone else: a newline in it would forge a log
line, an escape sequence would repaint the operator's terminal, and a
megabyte of it would be a megabyte of log. :func:`shown` is what every such
string goes through before it is logged or printed.
"""

from __future__ import annotations

__all__ = ["LIMIT", "shown"]

#: Characters kept by default; enough for a change subject or a request.
LIMIT = 200

# Control characters (C0, DEL, C1) and the Unicode line and paragraph
# separators some log viewers break lines at; each is written as an escape.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\"})
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
# Lone surrogates (a JSON "\ud800" decodes to one): no UTF-8 log file or
# database can write them, so the record would be lost with its line.
_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})


def shown(text: object, limit: int = LIMIT) -> str:
    """``text`` on one line, control characters escaped, at most ``limit``
    characters of it kept (the rest counted, not shown).

    ``bytes`` are decoded as UTF-8 with undecodable bytes replaced; anything
    else goes through ``str`` first.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    value = str(text)
    cut = len(value) - limit
    if cut > 0:
        value = value[:limit]
    value = value.translate(_ESCAPES)
    return f"{value}...(+{cut} chars)" if cut > 0 else value
