"""Parsing gerrit stream-events lines into TriggerEvents."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.events import TriggerEvent

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GERRIT_DATA = SHARED / "testdata" / "gerrit"


def shared_lines(name: str) -> list[str]:
    path = GERRIT_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared test data comes with the project workspace)")
    return [line for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["events-documented-2.13.jsonl", "events-wire-2.13.jsonl"])
def test_every_shared_line_parses(name: str) -> None:
    lines = shared_lines(name)
    events = [parse_event(line) for line in lines]
    parsed = [e for e in events if e is not None]
    assert len(parsed) >= len(lines) - 1  # only dropped-output yields None
    for event, line in zip(events, lines, strict=True):
        kind = json.loads(line)["type"]
        if kind == "dropped-output":
            assert event is None
            continue
        assert event is not None and event.type == kind
        assert event.project.startswith("openstack")
        assert event.ref.startswith("refs/")
        assert event.account is not None and event.account.username
        if "change" in json.loads(line):
            assert isinstance(event.change, int) and isinstance(event.patchset, int)
            assert event.change_id.startswith("I") and event.change_url.startswith("https://")
            assert event.revision and event.branch == "master"


def by_type(kind: str) -> list[TriggerEvent]:
    lines = shared_lines("events-documented-2.13.jsonl")
    events = [parse_event(line) for line in lines if json.loads(line)["type"] == kind]
    return [e for e in events if e is not None]


def test_patchset_created_fields() -> None:
    event = by_type("patchset-created")[0]
    assert (event.project, event.branch, event.ref) == (
        "openstack/nova",
        "master",
        "refs/changes/56/123456/1",
    )
    assert (event.change, event.patchset, event.change_key) == (123456, 1, "123456,1")
    assert event.revision == "8f2c3a1b4d5e6f708192a3b4c5d6e7f801234567"
    assert event.account is not None and event.account.username == "alice"
    assert event.created_on == 1480000001.0
    assert event.raw["type"] == "patchset-created"


def test_comment_added_votes_and_transitions() -> None:
    workflow = by_type("comment-added")[3]
    assert workflow.comment == "Patch Set 2: Workflow+1"
    labels = {(a.label, a.value, a.old_value) for a in workflow.approvals}
    assert labels == {("Code-Review", 2, None), ("Workflow", 1, 0)}
    assert [a.label for a in workflow.changed_approvals()] == ["Workflow"]
    assert all(a.by is not None and a.by.username == "bobcore" for a in workflow.approvals)


def test_ref_updated_branches_tags_and_short_names() -> None:
    refs = {(e.ref, e.branch, e.old_rev[:4], e.new_rev[:4]) for e in by_type("ref-updated")}
    assert ("refs/heads/master", "master", "2e1d", "c0ff") in refs
    assert ("refs/tags/15.0.0", "", "0000", "7a6b") in refs
    assert ("refs/heads/stable/ocata", "stable/ocata", "0000", "c0ff") in refs
    assert ("refs/heads/stable/liberty", "stable/liberty", "3f2e", "0000") in refs


def test_change_merged_new_rev_and_accounts() -> None:
    (merged,) = by_type("change-merged")
    assert merged.new_rev == "c0ffee0123456789abcdef0123456789abcdef01"
    assert merged.account is not None and merged.account.username == "ci-gate"
    (abandoned,) = by_type("change-abandoned")
    assert abandoned.account is not None and abandoned.account.username == "bobcore"


def test_missing_event_created_on_falls_back_to_now() -> None:
    line = json.dumps({"type": "ref-updated", "refUpdate": {"refName": "master", "project": "p"}})
    before = time.time()
    event = parse_event(line)
    assert event is not None and before <= event.created_on <= time.time()
    assert (event.ref, event.branch) == ("refs/heads/master", "master")


def test_integer_numbers_and_bytes_accepted() -> None:
    line = json.dumps(
        {
            "type": "patchset-created",
            "change": {"project": "p", "branch": "b", "number": 7, "id": "I1"},
            "patchSet": {"number": 3, "ref": "refs/changes/07/7/3", "revision": "abc"},
            "uploader": {"username": "u"},
            "eventCreatedOn": 5,
        }
    ).encode()
    event = parse_event(line, legacy_approvals=True)
    assert event is not None and (event.change, event.patchset) == (7, 3)
    assert event.legacy_approvals is True


def test_other_types_still_become_events() -> None:
    line = json.dumps(
        {
            "type": "topic-changed",
            "change": {"project": "p", "branch": "b", "number": "9"},
            "changer": {"username": "x"},
            "oldTopic": "t",
        }
    )
    event = parse_event(line)
    assert event is not None and event.type == "topic-changed" and event.change == 9
    assert event.account is not None and event.account.username == "x"
    replicated = parse_event('{"type": "ref-replicated", "project": "p", "ref": "refs/heads/m"}')
    assert replicated is not None and replicated.project == "p"


def test_dropped_output_warns_and_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gatekeeper.gerrit.events"):
        assert parse_event('{"type":"dropped-output"}') is None
    assert "dropped" in caplog.text


def test_blank_line_is_skipped() -> None:
    assert parse_event("  \n") is None


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        pytest.param("this is not json", "not JSON", id="not-json"),
        pytest.param('["a", "list"]', "JSON object", id="list"),
        pytest.param('{"change": {}}', "no 'type'", id="missing-type"),
        pytest.param('{"type": 3}', "no 'type'", id="type-not-string"),
        pytest.param(
            '{"type": "patchset-created", "change": {"number": "abc"}}',
            "change.number",
            id="change-number-abc",
        ),
        pytest.param('{"type": "comment-added", "change": []}', "'change'", id="change-list"),
        pytest.param(
            '{"type": "comment-added", "approvals": [{"type": "V", "value": "x"}]}',
            "should be a number",
            id="approval-value",
        ),
        pytest.param(
            '{"type": "comment-added", "eventCreatedOn": "yesterday"}',
            "eventCreatedOn",
            id="created-on",
        ),
    ],
)
def test_malformed_lines_raise(line: str, fragment: str) -> None:
    with pytest.raises(EventParseError) as info:
        parse_event(line)
    assert fragment in str(info.value)
    assert line[:20] in str(info.value)


def test_huge_line_is_refused_with_truncated_text() -> None:
    line = '{"type": "comment-added", "comment": "' + "x" * 10_000_000 + '"}'
    with pytest.raises(EventParseError) as info:
        parse_event(line, max_length=1_000_000)
    message = str(info.value)
    assert len(message) < 500 and "longer than the limit" in message
    with pytest.raises(EventParseError) as info:
        parse_event(line.encode(), max_length=1_000_000)
    assert len(str(info.value)) < 500


def test_long_bad_line_is_truncated_in_message() -> None:
    line = "not json " + "y" * 5000
    with pytest.raises(EventParseError) as info:
        parse_event(line)
    assert len(str(info.value)) < 500 and "more characters" in str(info.value)
