"""What a listener does with one line of Gerrit events: hand on, skip, or catch up.

The SSH stream listener and the JSONL replayer read the same lines and must
judge them alike: an event of a type Gerrit does not document is skipped
(it cannot be routed right), a line that is not an event is skipped (one
bad line must never stop a stream), and ``dropped-output`` means events
were lost. :func:`read_line` is that judgement, once; each listener logs
it in its own terms (a stream has no line numbers, a file has).
"""

from __future__ import annotations

from typing import NamedTuple

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.gerrit_vocabulary import KNOWN_TYPES

__all__ = ["LineVerdict", "read_line"]

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


def read_line(
    line: str | bytes, legacy_approvals: bool = False, max_length: int = 1_000_000
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
