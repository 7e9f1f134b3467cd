"""The live-console protocol between a worker and the web, both sides of it.

A worker serves the consoles of its running builds on a TCP port of its own
(``worker.console-listen``) and records ``host:port`` on each build's row
when the build starts. The web dials the address on the row, writes the
build's uuid and a newline, and reads one status line: :data:`OK` and then
the console from its first byte, followed until the build ends (the worker
closes the connection), or ``ERROR <why>`` and nothing more. The client
sends nothing else: there is nothing to ask but "this build's console".
"""

from __future__ import annotations

import re

__all__ = ["OK", "REQUEST_LIMIT", "is_build_uuid", "split_address"]

#: The status line of a console that follows.
OK = b"OK\n"
#: The longest request line read (a uuid and a newline, with room to spare).
REQUEST_LIMIT = 128

# Build uuids are uuid4().hex; dashes allowed for uuids made elsewhere. No
# dot, slash or anything else a path or a second request could be made of.
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def is_build_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) as a pair, or None when it is not one."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
