"""Gerrit ``stream-events`` over SSH, with reconnects.

Each line becomes a :class:`TriggerEvent` handed to the sink. A line that is
not an event we understand is logged (truncated) and skipped: one bad line
must never stop the stream. When the connection drops, the listener
reconnects with capped exponential backoff and logs every attempt.

Each time the stream opens (the first time too), whenever Gerrit says it
dropped output, and when a line is longer than ``gerrit.max-event-bytes``
(it cannot be read, so its event is lost as surely as a dropped one), the
catch-ups for this Gerrit are told (see
:mod:`gatekeeper.gerrit.catchup`): they query Gerrit for what was missed.
"""

from __future__ import annotations

import logging
import threading

from gatekeeper.errors import GerritAccessError, GerritError
from gatekeeper.gerrit.catchup import stream_news
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.events import EXCERPT_LENGTH
from gatekeeper.gerrit.stream_lines import OverlongLine, read_line
from gatekeeper.model.listener import Sink
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)


class GerritListener:
    """Owns the listener thread: the one that calls :meth:`run`."""

    def __init__(
        self,
        connection: GerritConnection,
        backoff_start: float = 1.0,
        backoff_max: float = 60.0,
        max_line: int | None = None,
    ) -> None:
        self.connection = connection
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        #: The longest line read; the site's ``gerrit.max-event-bytes`` by default.
        self.max_line = max_line if max_line is not None else connection.config.max_event_bytes
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0
        self.skipped_lines = 0
        self.opened = 0
        self.dropped_output = 0
        self.overlong_lines = 0
        #: Why Gerrit refuses this account a stream (the missing capability),
        #: until a stream delivers a line; '' when it does not.
        self.access_error = ""

    def run(self, sink: Sink) -> None:
        delay = self.backoff_start
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                client = self.connection.connect()
            except GerritError as exc:
                log.warning(
                    "stream-events: connect attempt %d failed: %s; retrying in %.1fs",
                    attempt,
                    shown(exc),
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            try:
                legacy = not self._sends_old_value()

                def opened() -> None:
                    nonlocal delay, attempt
                    config = self.connection.config
                    log.info(
                        "stream-events: connected to %s:%d (attempt %d)",
                        config.host,
                        config.port,
                        attempt,
                    )
                    self.connected.set()
                    delay, attempt = self.backoff_start, 0
                    self.opened += 1
                    stream_news(config, "stream opened")

                lines = self.connection.stream_lines(client, self._stop, self.max_line, opened)
                for line in lines:
                    self.access_error = ""
                    self._handle_line(line, legacy, sink)
            except GerritAccessError as exc:
                # Not a lost connection: no event reaches gatekeeper until an
                # administrator grants the capability. Tried again (a grant
                # takes effect on the next connection), loudly each time.
                self.access_error = str(exc)
                log.error(
                    "stream-events: Gerrit refuses account %s a stream (%s); grant it the "
                    "'Stream Events' capability; trying again in %.1fs",
                    self.connection.config.user,
                    shown(exc),
                    delay,
                )
            except GerritError as exc:
                if not self._stop.is_set():
                    self.reconnects += 1
                    log.warning("stream-events: %s; reconnecting in %.1fs", shown(exc), delay)
            except Exception:
                # Still a lost stream (paramiko can raise EOFError and the like
                # on a reset connection): counted, and reconnected, all the same.
                if not self._stop.is_set():
                    self.reconnects += 1
                log.exception("stream-events: unexpected error; reconnecting in %.1fs", delay)
            finally:
                self.connected.clear()
                client.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff_max)

    def _sends_old_value(self) -> bool:
        try:
            return self.connection.sends_old_value()
        except GerritError as exc:
            log.warning("cannot read gerrit version (%s); assuming Gerrit >= 2.13", shown(exc))
            return True

    def _handle_line(self, line: bytes | OverlongLine, legacy: bool, sink: Sink) -> None:
        if isinstance(line, OverlongLine):
            self.overlong_lines += 1
            log.error(
                "stream-events: skipped a line of %d bytes, over the limit of %d "
                "(gerrit.max-event-bytes); catching up with Gerrit's query: %s",
                line.size,
                self.max_line,
                shown(line.head),
            )
            stream_news(self.connection.config, "over-long line")
            return
        verdict = read_line(line, legacy_approvals=legacy, max_length=self.max_line)
        if verdict.error is not None:
            self.skipped_lines += 1
            log.error("stream-events: skipped a line: %s", shown(verdict.error, 1000))
            return
        if verdict.unknown_type is not None:
            self.skipped_lines += 1
            log.warning(
                "stream-events: skipped an event of unknown type '%s': %s",
                shown(verdict.unknown_type, 100),
                shown(line, EXCERPT_LENGTH),
            )
            return
        if verdict.dropped_output:
            # The parser logs it; what Gerrit threw away is caught up on.
            self.dropped_output += 1
            stream_news(self.connection.config, "dropped-output")
            return
        if verdict.event is not None:
            log.debug("stream-events: %s", verdict.event)
            sink(verdict.event)

    def stop(self) -> None:
        self._stop.set()
