"""``trigger: timer:``: cron slots that enqueue every project of a pipeline.

The timer thread (:class:`Timer`) works out when each pipeline's cron
lines fire (APScheduler's ``CronTrigger`` computes the slots; nothing else
of APScheduler is used), and when a slot comes it puts a slot event on the
scheduler. The scheduler thread, which owns the layout, makes of it one
``timer`` event per project with jobs in the pipeline, as Zuul v2.5 did
(:func:`slot_events`), and routes them like any event (the Router matches
them to their pipeline only): each project is enqueued as a ref item at
the tip of its ``master`` branch (:func:`branch_tip_event`).

Zuul v2.5 enqueued a "NullChange" per project: no branch, no revision;
its jobs ran on the branch their own definition checked out (master unless
told otherwise: OpenStack's ``periodic-stable`` jobs named their branch in
Jenkins Job Builder), and a job with a ``branch:`` filter never matched
it. A ref on ``master`` keeps that, and gives a job what a worker needs to
prepare its workspace (``ZUUL_BRANCH``, ``ZUUL_REF``); the revision is the
branch's tip when the workspace is made, so ``ZUUL_COMMIT`` is not sent
(Zuul v2.5 sent none for these either).

Each slot fires once: the last slot fired is kept per pipeline in
``scheduler_state`` (``timer:<pipeline>``). A slot that came while the
daemon was down fires when it starts within :data:`GRACE` of the slot (a
restart "in that minute"), and never later: a nightly job run hours late
would land in the day's busy hours, competing with the gate for nodes, and
the next slot comes anyway (Zuul v2.5's scheduler dropped a missed slot
after a second). Times are UTC.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError

from gatekeeper.config.layout import Layout
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import SchedulerState
from gatekeeper.errors import ConfigError
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.zuul_events import TIMER, OwnEvent

__all__ = [
    "GRACE",
    "SlotLedger",
    "Timer",
    "branch_tip_event",
    "cron_trigger",
    "due_slot",
    "is_slot",
    "schedule",
    "slot_events",
]

log = logging.getLogger(__name__)

#: How late a slot may still fire after a start (see the module doc).
GRACE = timedelta(seconds=60)
#: The longest the thread sleeps: a clock stepped forward is noticed by then.
MAX_SLEEP = 30.0
#: The branch a timer item is built on (see the module doc).
BRANCH = "master"


def cron_trigger(line: str) -> CronTrigger:
    """APScheduler's trigger for a layout cron line (Zuul v2's field order:
    minute hour day month weekday [second]; checked at load by
    :func:`gatekeeper.config.cron.cron_problem`)."""
    fields = line.split()
    minute, hour, day, month, day_of_week = fields[:5]
    second = fields[5] if len(fields) == 6 else "0"
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week,
        timezone=UTC,
    )


def due_slot(trigger: CronTrigger, after: datetime, now: datetime) -> datetime | None:
    """The latest slot of ``trigger`` in (``after``, ``now``], or None.

    Several slots come due together only after a pause (a stepped clock, a
    start within the grace): one enqueue stands for them all.
    """
    found: datetime | None = None
    # Fire times are whole seconds: ask from just after ``after``.
    slot = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while slot is not None and slot <= now:
        found = slot
        slot = trigger.get_next_fire_time(slot, slot + timedelta(seconds=1))
    return found


def branch_tip_event(project: str, pipeline: str, timespec: str) -> OwnEvent:
    """One project's share of a timer slot: its ``master`` tip, for ``pipeline``."""
    return OwnEvent(
        type=TIMER,
        project=project,
        branch=BRANCH,
        ref=f"refs/heads/{BRANCH}",
        pipeline=pipeline,
        timespec=timespec,
    )


def is_slot(event: TriggerEvent) -> TypeGuard[OwnEvent]:
    """Whether ``event`` is a timer slot still to be made into project events."""
    return isinstance(event, OwnEvent) and event.type == TIMER and not event.project


def slot_events(slot: OwnEvent, layout: Layout) -> list[OwnEvent]:
    """One event per project with jobs in the slot's pipeline, in layout
    order (the scheduler thread: the layout is its own)."""
    found: list[OwnEvent] = []
    for name in layout.project_names:
        try:
            if layout.jobs_for(name, slot.pipeline):
                found.append(branch_tip_event(name, slot.pipeline, slot.timespec))
        except ConfigError as exc:
            log.error("timer of %s: project %s skipped: %s", slot.pipeline, name, exc)
    log.info("timer slot of %s: enqueuing %d projects", slot.pipeline, len(found))
    return found


class SlotLedger:
    """The last slot fired per pipeline, in ``scheduler_state`` (any thread)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def key(pipeline: str) -> str:
        name = f"timer:{pipeline}"
        if len(name) <= 64:
            return name
        # The column holds 64 characters; a long name is kept by its digest.
        return f"timer:#{hashlib.sha256(pipeline.encode()).hexdigest()[:40]}"

    def claim(self, pipeline: str, slot: datetime) -> bool:
        """Record ``slot`` as fired for ``pipeline``; false when it (or a later
        one) was fired already, by this run of the daemon or an earlier one."""
        value = slot.timestamp()
        with self.db.session() as session:
            row = session.get(SchedulerState, self.key(pipeline))
            if row is None:
                session.add(SchedulerState(name=self.key(pipeline), value=repr(value)))
                return True
            try:
                if float(row.value) >= value:
                    return False
            except ValueError:
                pass  # unreadable: overwritten with a good one
            row.value = repr(value)
            return True


class Timer:
    """Fires the timer triggers of the layout in use. Runs in its own thread
    ("timer"): it reads the layout's cron lines, keeps its slots in the
    database and puts slot events on the scheduler (``sink``); it changes no
    queue, and asks the layout nothing else.

    ``clock`` gives the time (UTC, aware); tests pass their own and call
    :meth:`run_once`.
    """

    def __init__(
        self,
        layout: Layout,
        db: Database,
        sink: Callable[[TriggerEvent], None],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sink = sink
        self.clock = clock or (lambda: datetime.now(UTC))
        self.slots = SlotLedger(db)
        self._triggers: list[tuple[str, str, CronTrigger]] = []
        self._set_triggers(layout)
        # Everything up to here is considered: a start looks back GRACE.
        self._since = self.clock() - GRACE
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: The last slots fired (pipeline, slot), and passes made, for tests.
        self.fired: deque[tuple[str, datetime]] = deque(maxlen=100)
        self.passes = 0

    def _set_triggers(self, layout: Layout) -> None:
        self._triggers = [
            (pipeline.name, timer.time, cron_trigger(timer.time))
            for pipeline in layout.pipelines
            for timer in pipeline.trigger.timer
        ]

    def set_layout(self, layout: Layout) -> None:
        """Use ``layout``'s timers from now on (any thread)."""
        self._set_triggers(layout)
        self._wake.set()

    @property
    def active(self) -> bool:
        return bool(self._triggers)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = MAX_SLEEP
            try:
                delay = self.run_once()
            except Exception:
                log.exception("timer pass failed")
            self._wake.wait(delay)
            self._wake.clear()

    def run_once(self) -> float:
        """Fire what is due; returns the seconds until the next slot (at most
        :data:`MAX_SLEEP`)."""
        now = self.clock()
        after = max(self._since, now - GRACE)
        due: dict[str, tuple[datetime, str]] = {}
        for pipeline, line, trigger in list(self._triggers):
            slot = due_slot(trigger, after, now)
            if slot is not None and (pipeline not in due or slot > due[pipeline][0]):
                due[pipeline] = (slot, line)
        self._since = now
        for pipeline, (slot, line) in due.items():
            self._fire(pipeline, line, slot)
        self.passes += 1
        return self._next_delay(now)

    def _next_delay(self, now: datetime) -> float:
        delay = MAX_SLEEP
        for _, _, trigger in list(self._triggers):
            upcoming = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
            if upcoming is not None:
                delay = min(delay, (upcoming - now).total_seconds())
        return max(delay, 0.01)

    def _fire(self, pipeline: str, line: str, slot: datetime) -> None:
        try:
            if not self.slots.claim(pipeline, slot):
                log.info("timer slot %s of %s fired already", slot.isoformat(), pipeline)
                return
        except SQLAlchemyError as exc:
            # Firing twice after a restart is better than not firing at all.
            log.error("could not record timer slot %s of %s: %s", slot, pipeline, exc)
        log.info("timer slot %s (%s) of %s", slot.isoformat(), line, pipeline)
        self.fired.append((pipeline, slot))
        self.sink(OwnEvent(type=TIMER, pipeline=pipeline, timespec=line))


def schedule(layout: Layout, now: datetime) -> list[str]:
    """Each timer line of ``layout`` and its next slot after ``now``, in words
    (``gatekeeper validate`` prints them)."""
    out = []
    for pipeline in layout.pipelines:
        for timer in pipeline.trigger.timer:
            slot = cron_trigger(timer.time).get_next_fire_time(None, now)
            when = slot.strftime("%Y-%m-%d %H:%M:%S UTC") if slot is not None else "never"
            out.append(f"{pipeline.name}: timer '{timer.time}' next fires {when}")
    return out
