"""Events rebuilt from ``gerrit query`` rows match the events the stream sent.

The shapes are Gerrit 2.13's, from ../shared/testdata/gerrit (read by path,
skipped when absent): a query row of change 123456 with all its approvals,
and the stream events of that change's life. The query example was taken
without ``--comments``; its comments are composed here from the
comment-added events (a change message is what comment-added carries).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config.layout import load_layout
from gatekeeper.gerrit.catchup import age_query, events_from_row, synthesize, votes_in_summary
from gatekeeper.gerrit.events import parse_event
from gatekeeper.gerrit.ledger import event_key
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.triggers import event_matches

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO.parent / "shared" / "testdata" / "gerrit"
CHANGE = 123456


def _testdata(name: str) -> Path:
    path = TESTDATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data is not next to this checkout)")
    return path


@pytest.fixture
def stream() -> list[TriggerEvent]:
    """The stream events of change 123456 that have a time."""
    events = []
    for line in _testdata("events-documented-2.13.jsonl").read_text().splitlines():
        event = parse_event(line)
        if event is not None and event.change == CHANGE and event.raw.get("eventCreatedOn"):
            events.append(event)
    return events


@pytest.fixture
def row(stream: list[TriggerEvent]) -> dict[str, Any]:
    first = _testdata("query-example-2.13.jsonl").read_text().splitlines()[0]
    data: dict[str, Any] = json.loads(first)
    assert str(data["number"]) == str(CHANGE)
    comments = [
        {"timestamp": int(ps["createdOn"]), "reviewer": ps["uploader"], "message": msg}
        for ps in data["patchSets"]
        for msg in [f"Uploaded patch set {ps['number']}."]
    ]
    for event in stream:
        if event.type == "comment-added" and event.created_on <= data["lastUpdated"]:
            author = event.raw["author"]
            comments.append(
                {"timestamp": int(event.created_on), "reviewer": author, "message": event.comment}
            )
    comments.sort(key=lambda c: c["timestamp"])
    data["comments"] = comments
    return data


def keys(events: list[TriggerEvent]) -> dict[str, TriggerEvent]:
    out = {}
    for event in events:
        key = event_key(event)
        assert key is not None, event
        out[key.base] = event
    return out


def test_rebuilt_events_have_the_stream_events_keys(
    row: dict[str, Any], stream: list[TriggerEvent]
) -> None:
    rebuilt = synthesize([row], since=0)
    wanted = [
        e
        for e in stream
        if e.type in ("patchset-created", "comment-added") and e.created_on <= row["lastUpdated"]
    ]
    assert len(wanted) == 6
    assert sorted(keys(rebuilt)) == sorted(keys(wanted))
    for event in wanted:
        key = event_key(event)
        twin = keys(rebuilt)[key.base]  # type: ignore[union-attr]
        twin_key = event_key(twin)
        assert twin_key is not None and key is not None
        if key.at is not None:
            assert twin_key.stored() in key.candidates()
        assert (twin.patchset, twin.account and twin.account.username) == (
            event.patchset,
            event.account and event.account.username,
        )
        assert twin.ref == event.ref and twin.revision == event.revision


def test_rebuilt_votes_are_the_transitions_the_stream_marked(
    row: dict[str, Any], stream: list[TriggerEvent]
) -> None:
    rebuilt = keys(synthesize([row], since=0))
    for event in stream:
        if event.type != "comment-added" or event.created_on > row["lastUpdated"]:
            continue
        twin = rebuilt[event_key(event).base]  # type: ignore[union-attr]
        cast = {(a.label, a.value) for a in event.changed_approvals()}
        assert {(a.label, a.value) for a in twin.changed_approvals()} == cast, event.comment


def test_rebuilt_events_fire_the_project_layouts_triggers(
    row: dict[str, Any], stream: list[TriggerEvent]
) -> None:
    layout = load_layout(REPO / "layout.yaml")
    pipelines = {p.name: p for p in layout.pipelines}
    rebuilt = keys(synthesize([row], since=0))
    for event in stream:
        if event.type not in ("patchset-created", "comment-added"):
            continue
        if event.created_on > row["lastUpdated"]:
            continue
        twin = rebuilt[event_key(event).base]  # type: ignore[union-attr]
        for name, pipeline in pipelines.items():
            assert event_matches(pipeline, twin) == event_matches(pipeline, event), (
                name,
                event.comment,
            )
    approve = next(e for e in stream if e.comment == "Patch Set 2: Workflow+1")
    assert event_matches(pipelines["gate"], rebuilt[event_key(approve).base])  # type: ignore[union-attr]


def test_only_what_happened_since_is_rebuilt(row: dict[str, Any]) -> None:
    since = 1480005400  # the recheck on patch set 2
    rebuilt = synthesize([row], since=since)
    assert all(e.created_on >= since for e in rebuilt)
    assert [e.type for e in rebuilt] == ["comment-added"] * 3
    assert rebuilt == sorted(rebuilt, key=lambda e: e.created_on)


def test_status_messages_become_their_events() -> None:
    row = {
        "project": "p",
        "branch": "master",
        "number": 5,
        "status": "ABANDONED",
        "patchSets": [{"number": 1, "createdOn": 10, "ref": "refs/changes/05/5/1"}],
        "comments": [
            {"timestamp": 20, "reviewer": {"username": "a"}, "message": "Uploaded patch set 1."},
            {"timestamp": 30, "reviewer": {"username": "a"}, "message": "Abandoned\n\nnot needed"},
            {"timestamp": 40, "reviewer": {"username": "a"}, "message": "Restored"},
            {
                "timestamp": 50,
                "reviewer": {"username": "g"},
                "message": "Change has been successfully merged by g",
            },
        ],
    }
    got = [(e.type, e.patchset, e.created_on) for e in events_from_row(row, since=15)]
    assert got == [
        ("change-abandoned", 1, 30.0),
        ("change-restored", 1, 40.0),
        ("change-merged", 1, 50.0),
    ]


def test_rows_without_a_change_give_nothing() -> None:
    assert events_from_row({"type": "error"}, since=0) == []
    assert events_from_row({"number": "x", "project": "p"}, since=0) == []


@pytest.mark.parametrize(
    "summary,votes",
    [
        pytest.param(" Code-Review+2 Workflow+1", [("Code-Review", 2), ("Workflow", 1)], id="two"),
        pytest.param(" Verified-1", [("Verified", -1)], id="negative"),
        pytest.param(" -Code-Review", [("Code-Review", 0)], id="removed"),
        pytest.param(" Code-Review+1 (3 comments)", [("Code-Review", 1)], id="inline-comments"),
        pytest.param("", [], id="none"),
    ],
)
def test_votes_in_a_review_summary(summary: str, votes: list[tuple[str, int]]) -> None:
    assert votes_in_summary(summary) == votes


def test_age_query_rounds_up_and_is_never_zero() -> None:
    assert age_query(100.0, 190.2) == "-age:91s"
    assert age_query(100.0, 100.0) == "-age:1s"
