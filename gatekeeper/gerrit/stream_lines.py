"""What a listener does with one line of Gerrit events: hand on, skip, or catch up.

The SSH stream listener and the JSONL replayer read the same lines and must
judge them alike: an event of a type Gerrit does not document is skipped
(it cannot be routed right), a line that is not an event is skipped (one
bad line must never stop a stream), and ``dropped-output`` means events
were lost. :func:`read_line` is that judgement, once; each listener logs
it in its own terms (a stream has no line numbers, a file has).

:class:`LineSplitter` cuts the stream's bytes into lines. A line longer than
the limit is never held whole: past the limit its bytes are counted and
thrown away until its newline, and it comes out as an :class:`OverlongLine`
(its first bytes and its size) for the listener to log and catch up on;
the line after it is read as any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.gerrit_vocabulary import KNOWN_TYPES, MAX_EVENT_BYTES

__all__ = ["HEAD_BYTES", "LineSplitter", "LineVerdict", "OverlongLine", "read_line"]

#: How much of an over-long line is kept to be shown in the log.
HEAD_BYTES = 200

_DROPPED_OUTPUT = '"dropped-output"'
_DROPPED_OUTPUT_BYTES = _DROPPED_OUTPUT.encode()


class LineVerdict(NamedTuple):
    """One line judged: ``event`` to hand on, or why there is none.

    At most one of ``error`` (not an event we can read), ``unknown_type``
    (an event of a type Gerrit does not document) and ``dropped_output``
    (Gerrit's notice that it threw events away) is set; none of them and no
    event means a blank line.
    """

    event: TriggerEvent | None
    error: EventParseError | None = None
    unknown_type: str | None = None
    dropped_output: bool = False


class OverlongLine(NamedTuple):
    """A line longer than the limit: its first :data:`HEAD_BYTES` bytes and
    its whole size (its newline not counted)."""

    head: bytes
    size: int


class LineSplitter:
    """Cuts a byte stream into lines of at most ``max_line`` bytes.

    Owned by the thread reading the stream. Memory stays under about
    ``max_line`` plus one chunk whatever the stream sends; each byte is
    searched for a newline once, so a line of many chunks costs no more
    than its length.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        # The line being read is over the limit: its head, and how many
        # bytes of it were seen (the rest is not kept).
        self._overlong_head: bytes | None = None
        self._overlong_size = 0

    def feed(self, data: bytes) -> Iterator[bytes | OverlongLine]:
        """The lines ``data`` completes (without their newline), in order.

        Blank lines are left out.
        """
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = newline if newline >= 0 else len(data)
            piece = data[start:end]
            start = end + 1
            if self._overlong_head is not None:
                self._overlong_size += len(piece)
                # The head is whatever the line began with, however it was
                # cut into chunks (a small limit can be crossed before it is full).
                if len(self._overlong_head) < HEAD_BYTES:
                    self._overlong_head += piece[: HEAD_BYTES - len(self._overlong_head)]
            elif len(self._buf) + len(piece) > self.max_line:
                kept = bytes(self._buf[:HEAD_BYTES])
                self._overlong_head = kept + piece[: HEAD_BYTES - len(kept)]
                self._overlong_size = len(self._buf) + len(piece)
                self._buf = bytearray()
            else:
                self._buf += piece
            if newline < 0:
                break
            if self._overlong_head is not None:
                yield OverlongLine(self._overlong_head, self._overlong_size)
                self._overlong_head = None
                self._overlong_size = 0
                continue
            line = bytes(self._buf)
            self._buf = bytearray()
            if line.strip():
                yield line


def read_line(
    line: str | bytes, legacy_approvals: bool = False, max_length: int = MAX_EVENT_BYTES
) -> LineVerdict:
    """Judge one line (see :func:`~gatekeeper.gerrit.events.parse_event` for
    ``legacy_approvals`` and ``max_length``). Never raises for a bad line."""
    try:
        event = parse_event(line, legacy_approvals=legacy_approvals, max_length=max_length)
    except EventParseError as exc:
        return LineVerdict(None, error=exc)
    if event is None:
        # parse_event gives None for a blank line and for dropped-output (and
        # logs the latter); only the second asks for a catch-up.
        if isinstance(line, str):
            return LineVerdict(None, dropped_output=_DROPPED_OUTPUT in line)
        return LineVerdict(None, dropped_output=_DROPPED_OUTPUT_BYTES in line)
    if event.type not in KNOWN_TYPES:
        return LineVerdict(None, unknown_type=event.type)
    return LineVerdict(event)
