"""Replays a JSONL file of Gerrit events (debugging, dry runs, benchmarks)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gatekeeper.gerrit.stream_lines import read_line
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
                verdict = read_line(line, legacy_approvals=self.legacy_approvals)
                if verdict.error is not None:
                    self.skipped_lines += 1
                    log.error("%s:%d: skipped: %s", self.path, number, verdict.error)
                elif verdict.unknown_type is not None:
                    self.skipped_lines += 1
                    log.warning(
                        "%s:%d: skipped an event of unknown type %r",
                        self.path,
                        number,
                        verdict.unknown_type[:100],
                    )
                elif verdict.event is not None:
                    sink(verdict.event)

    def stop(self) -> None:
        self._stop.set()
