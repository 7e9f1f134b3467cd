"""Fuzz: ``gerrit query`` output, and each row of it, as Gerrit's replies
could be (mutated real rows, arbitrary text): a value typed as promised or
GerritError, and the catch-up's and the reporter's readings of a row never
raise."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeeper.errors import GerritError
from gatekeeper.gerrit.catchup import events_from_row
from gatekeeper.gerrit.connection import parse_query_output
from gatekeeper.gerrit.source import change_from_query, comments_since, lags_behind
from gatekeeper.model.change import Change
from gatekeeper.model.events import Approval, TriggerEvent
from tests.fuzz.shapes import (
    GERRIT,
    assert_conforms,
    hostile_text,
    json_values,
    jsonl,
    keyed_values,
    mutated,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EVENT = TriggerEvent(
    type="comment-added",
    project="openstack/nova",
    change=123456,
    patchset=2,
    approvals=(Approval(label="Code-Review", value=2, old_value=0),),
    created_on=1480007000.0,
)


def rows() -> list[dict[str, Any]]:
    found = jsonl(GERRIT / "query-example-2.13.jsonl")
    for path in sorted((GERRIT / "captured-query").glob("*.jsonl")):
        found += jsonl(path)
    return [row for row in found if row.get("type") != "stats"]


@SETTINGS
@given(st.lists(hostile_text | json_values.map(json.dumps), max_size=5))
def test_query_output_of_any_lines(lines: list[str]) -> None:
    try:
        found, more = parse_query_output("\n".join(lines))
    except GerritError:
        return
    assert isinstance(more, bool)
    assert all(isinstance(row, dict) for row in found)


@SETTINGS
@given(st.data())
def test_mutated_real_rows(data: st.DataObject) -> None:
    row = data.draw(mutated(rows()))
    found, _ = parse_query_output(json.dumps(row))
    assert len(found) == (0 if row.get("type") in ("stats", "error") else 1)
    try:
        change = change_from_query(row)
    except GerritError:
        pass
    else:
        assert_conforms(change, Change)
    since = data.draw(st.floats(allow_nan=False, min_value=0, max_value=2e9))
    for event in events_from_row(row, since):
        assert_conforms(event, TriggerEvent)
    assert isinstance(lags_behind(row, EVENT), str)
    assert all(isinstance(text, str) for text in comments_since(row, "alice", since))


#: Every key the readers of a row look up, at any depth.
ROW_KEYS = [
    "project", "branch", "number", "id", "subject", "url", "owner", "status",
    "commitMessage", "currentPatchSet", "patchSets", "dependsOn", "neededBy",
    "comments", "lastUpdated", "type", "moreChanges", "message", "approvals",
    "by", "value", "username", "email", "name", "ref", "revision", "files",
    "file", "createdOn", "uploader", "reviewer", "timestamp", "isCurrentPatchSet",
]  # fmt: skip


@SETTINGS
@given(keyed_values(ROW_KEYS), st.sampled_from(["Patch Set 2: Code-Review+2", "Abandoned", ""]))
# What fuzzing found, kept as examples so every run tries them.
@example({"project": math.nan, "branch": "master", "number": "1"}, "")  # typed Change
@example({"project": "p", "number": math.inf}, "")  # OverflowError in the catch-up
@example({"project": "p", "number": 1, "currentPatchSet": [1]}, "")  # AttributeError
@example({"project": "p", "number": 1, "comments": 5}, "")  # TypeError
@example({"project": "p", "number": 1, "patchSets": [{"number": 1, "createdOn": 10**400}]}, "")
@example({"project": "p", "number": 1}, "Patch Set " + "9" * 5000 + ": Code-Review+2")
def test_a_row_that_is_anything(row: Any, message: str) -> None:
    if not isinstance(row, dict):
        row = {"project": "p", "number": 1, "x": row}
    row.setdefault("comments", [{"message": message, "timestamp": 1, "reviewer": {}}])
    try:
        assert_conforms(change_from_query(row), Change)
    except GerritError:
        pass
    for event in events_from_row(row, 0.0):
        assert_conforms(event, TriggerEvent)
    assert isinstance(lags_behind(row, EVENT), str)
    list(comments_since(row, "alice", 0.0))
