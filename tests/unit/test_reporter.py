"""The reporter's threads: one change's reports in order, other changes not
waiting behind a stalled one, and every outcome handed back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest

from gatekeeper.model.change import Change
from gatekeeper.scheduler.reporter import ReportOutcome, ReportQueue
from gatekeeper.scheduler.reports import Report, ReportKind

pytestmark = pytest.mark.timeout(30)


class StallingReporter:
    """Delivers at once, except reports on ``stalled`` changes, which wait for ``go``."""

    def __init__(self, stalled: set[int]) -> None:
        self.stalled = stalled
        self.go = threading.Event()
        self.delivered: queue.Queue[str] = queue.Queue()

    def deliver(self, report: Report, stop: threading.Event) -> ReportOutcome:
        if report.change.number in self.stalled:
            self.go.wait()
        self.delivered.put(report.message)
        return ReportOutcome(report, sent=True)


def report(number: int, message: str) -> Report:
    return Report(Change("openstack/nova", "master", number, 1), ReportKind.NOTICE, message)


def test_a_stalled_change_holds_up_only_its_own_reports() -> None:
    reporter = StallingReporter(stalled={1})
    outcomes: queue.Queue[str] = queue.Queue()

    def post(action: Callable[[], None]) -> None:
        action()  # the scheduler thread would run it; here, the reporter's

    reports = ReportQueue(reporter, post, threads=2)
    try:
        for message in ("1-start", "1-result"):
            reports.send(report(1, message), lambda o: outcomes.put(o.report.message))
        reports.send(report(2, "2-result"), lambda o: outcomes.put(o.report.message))
        assert outcomes.get(timeout=10) == "2-result"
        assert not reports.idle()
        reporter.go.set()
        assert [outcomes.get(timeout=10) for _ in range(2)] == ["1-start", "1-result"]
    finally:
        reporter.go.set()
        reports.stop()


class FailingReporter:
    def deliver(self, report: Report, stop: threading.Event) -> ReportOutcome:
        raise RuntimeError("broken reporter")


def test_a_reporter_that_raises_still_hands_back_an_outcome() -> None:
    outcomes: queue.Queue[ReportOutcome] = queue.Queue()
    reports = ReportQueue(FailingReporter(), lambda action: action(), threads=1)
    try:
        reports.send(report(3, "x"), outcomes.put)
        outcome = outcomes.get(timeout=10)
        assert not outcome.sent and "broken reporter" in outcome.error
    finally:
        reports.stop()
