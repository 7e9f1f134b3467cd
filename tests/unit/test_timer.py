"""When timer slots fire: once each, across restarts, never late.

The timer runs on a test clock here (its ``clock`` seam) and each test
calls its pass (``run_once``) itself; the slots are kept in a real
database, as in the daemon.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.db.engine import Database
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.timer import Timer, cron_trigger, due_slot, is_slot, slot_events
from gatekeeper.scheduler.zuul_events import OwnEvent

pytestmark = pytest.mark.timeout(30)

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: periodic
    manager: independent
    trigger:
      timer:
        - time: '0 6 * * *'
        - time: '0 6 * * *'
  - name: hourly
    manager: independent
    trigger:
      timer:
        - time: '30 * * * *'
jobs:
  - name: nightly
  - name: unit
projects:
  - name: openstack/nova
    check: [unit]
    periodic: [nightly]
    hourly: [nightly]
  - name: openstack/glance
    periodic: [nightly]
  - name: openstack/keystone
    check: [unit]
"""

SIX = datetime(2026, 12, 7, 6, 0, 0, tzinfo=UTC)


class Clock:
    """The time the timer reads; the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    path = tmp_path / "layout.yaml"
    path.write_text(LAYOUT)
    return load_layout(path)


def timer_at(
    layout: Layout, db: Database, now: datetime, events: list[TriggerEvent]
) -> tuple[Timer, Clock]:
    clock = Clock(now)
    return Timer(layout, db, events.append, clock), clock


def slots(events: list[TriggerEvent]) -> list[tuple[str, str]]:
    """(pipeline, cron line) of each slot the timer put on the scheduler."""
    out = []
    for event in events:
        assert is_slot(event)
        out.append((event.pipeline, event.timespec))
    return out


def test_a_slot_enqueues_each_project_of_its_pipeline_once_when_it_comes(
    layout: Layout, sqlite_db: Database
) -> None:
    events: list[TriggerEvent] = []
    timer, clock = timer_at(layout, sqlite_db, SIX - timedelta(seconds=1), events)
    timer.run_once()
    assert events == []
    clock.now = SIX
    timer.run_once()
    # Two lines name the same slot: the pipeline fires once; hourly's slot
    # (at :30) has not come.
    assert slots(events) == [("periodic", "0 6 * * *")]
    clock.now = SIX + timedelta(seconds=30)
    timer.run_once()
    assert len(events) == 1

    # The scheduler thread makes the slot one event per project with jobs
    # in the pipeline (keystone has none there), at master's tip.
    [slot] = events
    assert isinstance(slot, OwnEvent)
    made = slot_events(slot, layout)
    assert [(e.pipeline, e.project, e.ref, e.branch) for e in made] == [
        ("periodic", "openstack/nova", "refs/heads/master", "master"),
        ("periodic", "openstack/glance", "refs/heads/master", "master"),
    ]
    assert all(e.type == "timer" and e.change is None and not is_slot(e) for e in made)


def test_a_restart_in_the_slots_minute_does_not_fire_it_again(layout: Layout, db: Database) -> None:
    events: list[TriggerEvent] = []
    first, _ = timer_at(layout, db, SIX, events)
    first.run_once()
    assert len(events) == 1
    # The daemon restarts 20 s later: the slot is within the minute a start
    # looks back over, but the database says it fired.
    again, _ = timer_at(layout, db, SIX + timedelta(seconds=20), events)
    again.run_once()
    assert len(events) == 1 and list(again.fired) == []


def test_a_slot_that_came_while_the_daemon_started_fires_within_its_minute(
    layout: Layout, sqlite_db: Database
) -> None:
    events: list[TriggerEvent] = []
    timer, _ = timer_at(layout, sqlite_db, SIX + timedelta(seconds=40), events)
    timer.run_once()
    assert list(timer.fired) == [("periodic", SIX)]


def test_a_slot_missed_while_the_daemon_was_down_is_not_run_late(
    layout: Layout, sqlite_db: Database
) -> None:
    events: list[TriggerEvent] = []
    timer, clock = timer_at(layout, sqlite_db, SIX + timedelta(minutes=5), events)
    timer.run_once()
    assert events == []
    # The next day's slot fires as usual.
    clock.now = SIX + timedelta(days=1)
    timer.run_once()
    assert list(timer.fired) == [("periodic", SIX + timedelta(days=1))]


def test_slots_that_came_together_fire_once() -> None:
    """A clock stepped forward (or a stalled pass) brings several slots of
    a per-second line due together: the latest stands for them all."""
    trigger = cron_trigger("* * * * * *")
    start = SIX
    assert due_slot(trigger, start, start + timedelta(seconds=10)) == start + timedelta(seconds=10)
    assert due_slot(trigger, start, start) is None


def test_a_reconfigure_takes_the_new_layouts_timers(
    layout: Layout, sqlite_db: Database, tmp_path: Path
) -> None:
    events: list[TriggerEvent] = []
    timer, clock = timer_at(layout, sqlite_db, SIX - timedelta(seconds=1), events)
    timer.run_once()
    without = tmp_path / "without.yaml"
    without.write_text(LAYOUT.replace("        - time: '0 6 * * *'\n", ""))
    timer.set_layout(load_layout(without))
    clock.now = SIX
    timer.run_once()
    assert events == []


@pytest.mark.parametrize(
    ("line", "after", "expected"),
    [
        # Zuul v2's field order (minute hour day month weekday), seconds last.
        ("15 6 * * *", SIX, SIX.replace(minute=15)),
        ("0 6 * * * 45", SIX, SIX.replace(second=45)),
        # APScheduler's weekdays, as Zuul v2 passed them on: 0 is Monday.
        # 2026-12-07 is a Monday.
        ("0 6 * * 0", SIX - timedelta(days=1), SIX),
        ("0 6 * * sun", SIX, SIX + timedelta(days=6)),
        # The month is honoured (Zuul v2.5 dropped it).
        ("0 6 1 jan *", SIX, datetime(2027, 1, 1, 6, tzinfo=UTC)),
    ],
    ids=["minute", "second", "weekday-number", "weekday-name", "month"],
)
def test_cron_lines_fire_as_zuul_v2_read_them(
    line: str, after: datetime, expected: datetime
) -> None:
    trigger = cron_trigger(line)
    assert trigger.get_next_fire_time(None, after + timedelta(microseconds=1)) == expected
    assert due_slot(trigger, after, expected) == expected
    assert due_slot(trigger, after, expected - timedelta(seconds=1)) is None
