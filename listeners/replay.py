"""Replays a JSONL file of Gerrit events (debugging, dry runs, benchmarks)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit.events import KNOWN_TYPES, parse_event
from gatekeeper.model.listener import Sink

log = logging.getLogger(__name__)


class ReplayListener:
    """Reads a file once, in the thread that calls :meth:`run`."""

    def __init__(self, path: Path, legacy_approvals: bool = False) -> None:
        self.path = path
        self.legacy_approvals = legacy_approvals
        self._stop = threading.Event()
        self.skipped_lines = 0

    def run(self, sink: Sink) -> None:
        with self.path.open("rb") as stream:
            for number, line in enumerate(stream, start=1):
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                try:
                    event = parse_event(line, legacy_approvals=self.legacy_approvals)
                except EventParseError as exc:
                    self.skipped_lines += 1
                    log.error("%s:%d: skipped: %s", self.path, number, exc)
                    continue
                if event is None:
                    continue
                if event.type not in KNOWN_TYPES:
                    self.skipped_lines += 1
                    log.warning(
                        "%s:%d: skipped an event of unknown type %r",
                        self.path,
                        number,
                        event.type[:100],
                    )
                    continue
                sink(event)

    def stop(self) -> None:
        self._stop.set()
