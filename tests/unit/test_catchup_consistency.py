"""Consistency after an event: when Gerrit's query lags behind the stream.

The lagging Gerrit is a :class:`GerritConnection` whose one I/O seam for
this, ``query_change``, answers from a script of rows (a real Gerrit lags
only under load or with replicas, which no test here can produce); the
retry logic above it is the real code.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gatekeeper.config.site import GerritConfig
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.source import GerritSource, lags_behind
from gatekeeper.model.events import Account, Approval, TriggerEvent

pytestmark = pytest.mark.timeout(30)

BOB = Account("bob")


def row(
    patchset: int, votes: list[tuple[str, int, str]] = (), updated: int = 100
) -> dict[str, Any]:  # type: ignore[assignment]
    current = {
        "number": str(patchset),
        "ref": f"refs/changes/07/7/{patchset}",
        "approvals": [
            {"type": label, "value": str(value), "by": {"username": who}}
            for label, value, who in votes or []
        ],
    }
    return {
        "project": "p",
        "branch": "master",
        "number": "7",
        "lastUpdated": updated,
        "currentPatchSet": current,
        "patchSets": [current],
    }


def approval_event(at: float = 200.0) -> TriggerEvent:
    return TriggerEvent(
        type="comment-added",
        project="p",
        change=7,
        patchset=1,
        approvals=(Approval("Workflow", 1, 0, BOB), Approval("Code-Review", 2, None, BOB)),
        account=BOB,
        created_on=at,
    )


PS2 = TriggerEvent(type="patchset-created", change=7, patchset=2)
ON_PS2 = TriggerEvent(type="comment-added", change=7, patchset=2)
CASES = [
    ("patchset-not-yet", row(1), PS2, True),
    ("patchset-shown", row(2), PS2, False),
    ("older-patchset", row(3), ON_PS2, False),
    ("vote-not-yet", row(1, updated=100), approval_event(200), True),
    ("vote-shown", row(1, [("Workflow", 1, "bob")], updated=100), approval_event(200), False),
    ("vote-changed-since", row(1, [("Workflow", -1, "bob")], 300), approval_event(200), False),
    ("someone-elses-vote", row(1, [("Workflow", 1, "alice")], 100), approval_event(200), True),
]


@pytest.mark.parametrize(
    "query_row,event,lag", [pytest.param(*case[1:], id=case[0]) for case in CASES]
)
def test_what_counts_as_lagging(query_row: dict[str, Any], event: TriggerEvent, lag: bool) -> None:
    assert bool(lags_behind(query_row, event)) is lag


class LaggingGerrit(GerritConnection):
    """Answers ``query_change`` from a script: the rows a lagging Gerrit gives."""

    def __init__(self, rows: list[dict[str, Any] | None]) -> None:
        super().__init__(GerritConfig(host="127.0.0.1", user="gk", key="/nonexistent"))  # type: ignore[arg-type]
        self.rows = rows
        self.asked = 0

    def query_change(self, number: int) -> dict[str, Any] | None:
        answer = self.rows[min(self.asked, len(self.rows) - 1)]
        self.asked += 1
        return answer


def test_the_query_is_asked_again_until_it_shows_the_event() -> None:
    gerrit = LaggingGerrit([None, row(1), row(2)])
    source = GerritSource(gerrit, consistency_delays=(0.01, 0.02, 0.04, 0.08))
    event = TriggerEvent(type="patchset-created", project="p", change=7, patchset=2)
    change = source.change_for_event(event)
    assert change is not None and change.patchset == 2 and change.is_current_patchset
    assert gerrit.asked == 3 and source.consistency_retries == 2
    assert source.consistency_gave_up == 0


def test_it_gives_up_after_the_last_wait_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    gerrit = LaggingGerrit([row(1, updated=100)])
    source = GerritSource(gerrit, consistency_delays=(0.01, 0.02))
    caplog.set_level(logging.WARNING, logger="gatekeeper.gerrit.source")
    change = source.change_for_event(approval_event(200))
    assert change is not None and change.patchset == 1
    assert gerrit.asked == 3 and source.consistency_gave_up == 1
    assert "still does not show vote Workflow+1 by bob" in caplog.text


def test_a_consistent_answer_is_not_asked_twice() -> None:
    gerrit = LaggingGerrit([row(1, [("Workflow", 1, "bob")], updated=200)])
    source = GerritSource(gerrit)
    assert source.change_for_event(approval_event(200)) is not None
    assert gerrit.asked == 1 and source.consistency_retries == 0
