"""The event ledger against real SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from gatekeeper.config.site import GerritConfig
from gatekeeper.db.engine import Database
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.catchup import CatchUp
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.ledger import (
    CAUGHT_UP,
    TIME_TOLERANCE,
    EventLedger,
    event_key,
)
from gatekeeper.model.events import Account, Approval, TriggerEvent

pytestmark = pytest.mark.timeout(60)

BOB = Account("bob", "Bob Core", "bob@example.org")


def comment(text: str, at: float, change: int = 7, patchset: int = 1) -> TriggerEvent:
    return TriggerEvent(
        type="comment-added",
        project="demo/project",
        change=change,
        patchset=patchset,
        comment=text,
        account=BOB,
        approvals=(Approval("Workflow", 1, 0, BOB),),
        created_on=at,
    )


def test_an_event_is_acted_on_once(db: Database) -> None:
    ledger = EventLedger(db)
    now = float(int(time.time()))
    event = comment("Patch Set 1: Workflow+1", now)
    assert ledger.first_time(event)
    ledger.acted_on(event)
    assert not ledger.first_time(comment("Patch Set 1: Workflow+1", now))
    assert ledger.skipped == 1
    # A second ledger on the same database (a restarted scheduler) knows it too.
    assert EventLedger(db).seen(event)


@pytest.mark.parametrize(
    "shift,same",
    [
        pytest.param(TIME_TOLERANCE, True, id="within-tolerance"),
        pytest.param(-TIME_TOLERANCE, True, id="within-tolerance-before"),
        pytest.param(TIME_TOLERANCE + 1, False, id="later-is-another-comment"),
    ],
)
def test_times_match_within_the_tolerance(db: Database, shift: int, same: bool) -> None:
    ledger = EventLedger(db)
    now = float(int(time.time()))
    ledger.acted_on(comment("Patch Set 1:\n\nrecheck", now))
    assert ledger.seen(comment("Patch Set 1:\n\nrecheck", now + shift)) is same


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(comment("Patch Set 1:\n\nrecheck please", 0), id="text"),
        pytest.param(comment("Patch Set 1:\n\nrecheck", 0, change=8), id="change"),
        pytest.param(comment("Patch Set 1:\n\nrecheck", 0, patchset=2), id="patchset"),
    ],
)
def test_other_events_are_not_taken_for_it(db: Database, other: TriggerEvent) -> None:
    ledger = EventLedger(db)
    now = float(int(time.time()))
    ledger.acted_on(comment("Patch Set 1:\n\nrecheck", now))
    other.created_on = now
    assert not ledger.seen(other)
    alice = comment("Patch Set 1:\n\nrecheck", now)
    alice.account = Account("alice")
    assert not ledger.seen(alice)


def test_patchsets_and_merges_need_no_time(db: Database) -> None:
    ledger = EventLedger(db)
    created = TriggerEvent(type="patchset-created", change=3, patchset=2, created_on=100.0)
    ledger.acted_on(created)
    again = TriggerEvent(type="patchset-created", change=3, patchset=2, created_on=5000.0)
    assert ledger.seen(again)
    assert not ledger.seen(TriggerEvent(type="patchset-created", change=3, patchset=3))


def test_ref_updates_are_keyed_by_their_move(db: Database) -> None:
    """The events-log replays ref-updated: the same move is acted on once."""
    ledger = EventLedger(db)
    ref = TriggerEvent(
        type="ref-updated", project="p", ref="refs/heads/master", old_rev="b" * 40, new_rev="a" * 40
    )
    assert event_key(ref) is not None
    assert ledger.first_time(ref)
    ledger.acted_on(ref)
    assert not ledger.first_time(ref)
    later = TriggerEvent(
        type="ref-updated", project="p", ref="refs/heads/master", old_rev="a" * 40, new_rev="c" * 40
    )
    assert ledger.first_time(later)
    assert ledger.last_event() == pytest.approx(ref.created_on)


def test_events_without_their_json_have_no_key() -> None:
    """Built in code, not sent by Gerrit: nothing to recognise a replay by."""
    assert event_key(TriggerEvent(type="reviewer-added", project="p")) is None


def test_times_only_move_forward(db: Database) -> None:
    ledger = EventLedger(db)
    assert ledger.last_event() is None and ledger.caught_up_to() is None
    ledger.acted_on(comment("Patch Set 1: Workflow+1", 2000.0))
    ledger.acted_on(comment("Patch Set 1:\n\nold news", 1000.0))
    assert ledger.last_event() == 2000.0
    assert not ledger.first_time(TriggerEvent(type=CAUGHT_UP, created_on=3000.0))
    assert not ledger.first_time(TriggerEvent(type=CAUGHT_UP, created_on=2500.0))
    assert ledger.caught_up_to() == 3000.0


def test_old_events_are_forgotten(db: Database) -> None:
    ledger = EventLedger(db, retention=3600)
    now = time.time()
    old = comment("Patch Set 1:\n\nrecheck", now - 7200)
    recent = comment("Patch Set 1:\n\nrecheck", now - 60)
    ledger.acted_on(old)
    ledger.acted_on(recent)
    assert ledger.prune(now) == 1
    assert not ledger.seen(old) and ledger.seen(recent)


def test_unseen_leaves_out_what_was_acted_on(db: Database) -> None:
    ledger = EventLedger(db)
    now = float(int(time.time()))
    events = [comment(f"Patch Set 1:\n\nrecheck {i}", now) for i in range(700)]
    for event in events[::3]:
        ledger.acted_on(event)
    ref = TriggerEvent(type="ref-updated", project="p", ref="refs/heads/master")
    assert ledger.unseen([*events, ref]) == [e for i, e in enumerate(events) if i % 3] + [ref]


def test_a_failed_catch_up_hands_on_nothing_and_is_tried_again_from_the_same_time(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Gerrit unreachable (nothing listens on the port): no events, no marker,
    and the next catch-up starts where this one would have."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "known_hosts").write_text("")
    config = GerritConfig(
        host="127.0.0.1",
        port=port,
        user="gk",
        key=tmp_path / "k",
        known_hosts=tmp_path / "known_hosts",
    )
    ledger = EventLedger(sqlite_db)
    ledger.first_time(TriggerEvent(type=CAUGHT_UP, created_on=time.time() - 30))
    sent: list[TriggerEvent] = []
    catch_up = CatchUp(GerritConnection(config), ledger, sent.append, margin=10)
    before = catch_up.since(time.time())
    with pytest.raises(GerritError):
        catch_up.run_once("test")
    assert sent == [] and catch_up.runs == 0
    assert catch_up.since(time.time()) == before


def test_without_its_tables_the_ledger_lets_every_event_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database the ledger cannot use (here: never migrated) must not stop
    events: acting twice beats not acting."""
    broken = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    ledger = EventLedger(broken)
    event = comment("Patch Set 1:\n\nrecheck", time.time())
    assert ledger.first_time(event)
    ledger.acted_on(event)
    assert ledger.first_time(event)
    assert not ledger.first_time(TriggerEvent(type=CAUGHT_UP))
    assert "event ledger unavailable" in caplog.text
    broken.dispose()
