"""Sending reports: the scheduler thread never waits on Gerrit.

The scheduler thread composes a :class:`~gatekeeper.scheduler.reports.Report`
and hands it to the :class:`ReportQueue`; a reporter thread sends it
through the :class:`Reporter` seam (:class:`GerritReporter` for Gerrit),
and the :class:`ReportOutcome` comes back to the scheduler thread as a
management event. One change's reports are sent in the order they were
made; different changes do not wait for each other.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.errors import GerritError, GerritOutcomeUnknownError
from gatekeeper.gerrit.changeinfo import ChangeQueries
from gatekeeper.gerrit.connection import REVIEW_TIMEOUT, GerritConnection
from gatekeeper.gerrit.source import comments_since
from gatekeeper.gerrit.transport import Review, ReviewTransport, SshReview
from gatekeeper.model.metrics import NO_METRICS, Metrics
from gatekeeper.model.outside import shown
from gatekeeper.scheduler.reports import Report

log = logging.getLogger(__name__)

#: How many reports may be out at once (one per change at most).
REPORT_THREADS = 4
#: Tries of one report before it is given up (and logged as lost).
REPORT_ATTEMPTS = 5
#: Seconds before the second try; doubled for each later one, up to the max.
REPORT_BACKOFF = 2.0
REPORT_BACKOFF_MAX = 60.0
#: Our comment found on the change counts from this long before we sent it
#: (Gerrit's clock and ours may differ a little).
_CLOCK_SLACK = 5.0


@dataclass(frozen=True)
class ReportOutcome:
    """What became of one report, as the scheduler thread learns it."""

    report: Report
    #: Gerrit has the review (the votes and the message).
    sent: bool
    #: For a submit: whether the change is merged now (None: not a submit,
    #: or unknown because Gerrit could not be asked).
    merged: bool | None = None
    #: Why it was not sent (the last try's error), or ''.
    error: str = ""
    attempts: int = 1
    #: Gerrit answered and said no (a vote outside the account's permitted
    #: range, a submit its requirements refuse): sending it again cannot
    #: help, unlike a connection that failed.
    refused: bool = False


class Reporter(Protocol):
    """The reporter seam: deliver one report, retrying as it sees fit, and say
    what became of it. Called from a reporter thread; ``stop`` is set when the
    daemon stops (a retry should give up then)."""

    def deliver(self, report: Report, stop: threading.Event) -> ReportOutcome: ...


class GerritReporter:
    """Sends reports with ``gerrit review``, from the :class:`ReportQueue`'s
    threads: each thread has its own SSH connection, so a review that stalls
    holds up only its own change's reports.

    A review whose answer never came (timeout, connection lost) may have
    been applied: before sending it again, Gerrit is asked whether our
    message is on the change (or, for a submit, whether it merged).
    """

    def __init__(
        self,
        connection: GerritConnection,
        timeout: float = REVIEW_TIMEOUT,
        attempts: int = REPORT_ATTEMPTS,
        backoff: float = REPORT_BACKOFF,
        backoff_max: float = REPORT_BACKOFF_MAX,
        transport: ReviewTransport | None = None,
        queries: ChangeQueries | None = None,
    ) -> None:
        self.connection = connection
        #: How reviews go out (SSH unless the site file has gerrit.http).
        self.transport: ReviewTransport = transport or SshReview()
        #: Where read-backs are asked (None: the thread's SSH connection).
        self.queries = queries
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._local = threading.local()
        self._opened: list[GerritConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> GerritConnection:
        found: GerritConnection | None = getattr(self._local, "connection", None)
        if found is None:
            found = GerritConnection(self.connection.config)
            self._local.connection = found
            with self._lock:
                self._opened.append(found)
        return found

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()

    def deliver(self, report: Report, stop: threading.Event) -> ReportOutcome:
        change = report.change
        connection = self._connection()
        unmet = self._unmet(connection, report) if report.submit else []
        review = Review(
            change.project,
            change.number,
            change.patchset,
            report.message,
            report.labels,
            report.submit and not unmet,
            report.pipeline,
        )
        error = ""
        attempt = 0
        while attempt < max(1, self.attempts) and not stop.is_set():
            attempt += 1
            if attempt > 1:
                delay = min(self.backoff * 2 ** (attempt - 2), self.backoff_max)
                if stop.wait(delay):
                    break
            sent_at = time.time()
            try:
                status, out, err = self.transport.send(connection, review, self.timeout)
            except GerritOutcomeUnknownError as exc:
                error = str(exc)
                log.warning(
                    "%s report on %s: %s (try %d of %d); asking Gerrit whether it landed",
                    report.kind,
                    change,
                    shown(exc),
                    attempt,
                    self.attempts,
                )
                landed = self._landed(connection, report, sent_at, attempt)
                if landed is not None:
                    return landed
                continue
            except GerritError as exc:
                # Never reached Gerrit: safe to send again.
                error = str(exc)
                log.warning(
                    "%s report on %s: %s (try %d of %d)",
                    report.kind,
                    change,
                    shown(exc),
                    attempt,
                    self.attempts,
                )
                continue
            if status == 0 and unmet:
                # The votes and message are posted; the submit Gerrit would
                # refuse was not asked for.
                error = (
                    f"Gerrit will not submit {change.key}: its submit requirements are not "
                    f"met: {', '.join(unmet)}"
                )
                log.error("%s report on %s: %s", report.kind, change, shown(error))
                return ReportOutcome(report, True, False, error, attempt, refused=True)
            if status == 0:
                merged = self._merged(connection, report) if report.submit else None
                log.info(
                    "review posted on %s: %s%s",
                    change,
                    " ".join(f"{k}{v:+d}" for k, v in report.labels.items()) or "(no votes)",
                    " and submitted" if report.submit else "",
                )
                return ReportOutcome(report, True, merged, attempts=attempt)
            # Gerrit answered no: the same review would get the same answer.
            # A refused submit may still be merged (an earlier try landed).
            error = f"gerrit review {change.key} refused ({status}): {(err or out).strip()}"
            log.error("Gerrit refused the %s report on %s: %s", report.kind, change, shown(error))
            merged = self._merged(connection, report) if report.submit else None
            return ReportOutcome(report, False, merged, error, attempt, refused=True)
        log.error(
            "%s report on %s given up after %d tries: %s", report.kind, change, attempt, error
        )
        return ReportOutcome(report, False, None, error or "the daemon stopped", attempt)

    def _landed(
        self, connection: GerritConnection, report: Report, since: float, attempt: int
    ) -> ReportOutcome | None:
        """The outcome if Gerrit shows the review landed, else None (send it again)."""
        change = report.change
        try:
            row = (self.queries or connection).query_comments(change.number) or {}
        except GerritError as exc:
            log.warning("could not ask Gerrit about %s: %s", change, shown(exc))
            return None
        if report.submit and row.get("status") == "MERGED":
            log.info("the submit of %s landed: the change is merged", change)
            return ReportOutcome(report, True, True, attempts=attempt)
        text = report.message.strip()
        mine = comments_since(row, connection.config.user, since - _CLOCK_SLACK)
        if any(text in message for message in mine):
            log.info("the %s report on %s landed", report.kind, change)
            # The votes and message landed; a submit did not merge.
            return ReportOutcome(report, True, False if report.submit else None, attempts=attempt)
        return None

    def _unmet(self, connection: GerritConnection, report: Report) -> list[str]:
        """What Gerrit's submit records say the change still lacks once this
        report's own votes count; [] when nothing does, or Gerrit cannot be
        asked (the submit then finds out)."""
        try:
            row = (self.queries or connection).query_change(report.change.number)
        except GerritError as exc:
            log.warning("could not read the submit records of %s: %s", report.change, shown(exc))
            return []
        if row is None:
            return []
        return unmet_requirements(row, connection.config.user, report.labels)

    def _merged(self, connection: GerritConnection, report: Report) -> bool:
        """Read back after a submit: Gerrit may accept it and not merge."""
        try:
            row = (self.queries or connection).query_change(report.change.number)
        except GerritError as exc:
            log.error("could not read back %s after submit: %s", report.change, shown(exc))
            return False
        return row is not None and row.get("status") == "MERGED"


def unmet_requirements(row: dict[str, Any], user: str, votes: dict[str, int]) -> list[str]:
    """The submit requirements a query row's ``submitRecords`` say are not
    met, in words (``needs Code-Review``, ``blocked by Verified``), leaving out
    what ``user``'s ``votes`` are about to give: a label still needed that
    we vote up, and a block that is our own earlier vote being replaced."""
    records = row.get("submitRecords")
    unmet: list[str] = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or record.get("status") in ("OK", "CLOSED"):
            continue
        if record.get("status") == "RULE_ERROR":
            unmet.append(f"Gerrit's submit rule failed ({shown(str(record.get('errorMessage')))})")
            continue
        labels = record.get("labels")
        for label in labels if isinstance(labels, list) else []:
            if not isinstance(label, dict):
                continue
            name, status = str(label.get("label")), label.get("status")
            by = label.get("by")
            voter = by.get("username") if isinstance(by, dict) else None
            ours = votes.get(name, 0)
            if status in ("OK", "MAY") or (status == "NEED" and ours > 0):
                continue
            if status == "REJECT" and voter == user and ours > 0:
                continue
            words = "needs" if status == "NEED" else "blocked by"
            unmet.append(f"{words} {shown(name, 100)}")
    return unmet


_Done = Callable[[ReportOutcome], None]


class ReportQueue:
    """Sends reports off the scheduler thread.

    :meth:`send` is called from the scheduler thread; ``threads`` threads
    named ``reporter-N`` (started on first use) call the reporter. Each
    outcome's ``done`` callback is handed to ``post``, which runs it in the
    scheduler thread. One change's reports go out one at a time, in the order
    they were sent; the next change's do not wait behind them.
    """

    def __init__(
        self,
        reporter: Reporter,
        post: Callable[[Callable[[], None]], None],
        threads: int = REPORT_THREADS,
    ) -> None:
        self.reporter = reporter
        self._post = post
        self._thread_count = max(1, threads)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # Change -> its reports not yet delivered, the first one being sent or
        # next; a change is in ``_ready`` when its first report may be sent.
        # Each with the monotonic time it was sent (report latency).
        self._waiting: dict[tuple[str, int, str], deque[tuple[Report, _Done | None, float]]] = {}
        self._ready: queue.Queue[tuple[str, int, str] | None] = queue.Queue()
        self._in_flight = 0
        self._stop = threading.Event()
        #: Where each report's latency is counted (set by the scheduler).
        self.metrics: Metrics = NO_METRICS

    def send(self, report: Report, done: _Done | None = None) -> None:
        """Queue ``report``; ``done(outcome)`` later runs in the scheduler thread."""
        change = report.change
        key = (change.project, change.number, change.ref if change.is_ref else "")
        with self._lock:
            self._in_flight += 1
            waiting = self._waiting.get(key)
            if waiting is None:
                self._waiting[key] = deque([(report, done, time.monotonic())])
                self._ready.put(key)
            else:
                waiting.append((report, done, time.monotonic()))
            if not self._threads:
                self._start_locked()

    def idle(self) -> bool:
        """No report waiting or being sent (its outcome is already posted)."""
        with self._lock:
            return self._in_flight == 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; reports not sent by then are dropped (a restart
        finds an item's report through its ``reporting_since``)."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
            left = self._in_flight
        for _ in threads:
            self._ready.put(None)
        for thread in threads:
            thread.join(timeout=timeout)
        if left:
            log.warning("stopped with %d reports not sent", left)

    def _start_locked(self) -> None:
        for number in range(self._thread_count):
            thread = threading.Thread(target=self._run, name=f"reporter-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            key = self._ready.get()
            if key is None:
                return
            try:
                self._run_once(key)
            except Exception:
                log.exception("reporter: sending a report failed")

    def _run_once(self, key: tuple[str, int, str]) -> None:
        with self._lock:
            report, done, queued = self._waiting[key][0]
        try:
            outcome = self.reporter.deliver(report, self._stop)
        except Exception as exc:
            log.exception("%s report on %s failed", report.kind, report.change)
            outcome = ReportOutcome(report, False, None, f"the reporter failed: {exc}")
        self.metrics.report(
            report.kind, "sent" if outcome.sent else "failed", time.monotonic() - queued
        )
        if done is not None:
            callback = done
            # Posted before the report stops counting as in flight, so the
            # scheduler is never seen settled between the two.
            self._post(lambda: callback(outcome))
        with self._lock:
            waiting = self._waiting[key]
            waiting.popleft()
            self._in_flight -= 1
            if waiting:
                self._ready.put(key)
            else:
                del self._waiting[key]
