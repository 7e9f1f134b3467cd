"""Fuzz: a stream-events line, any bytes at all, gives a verdict and never an
exception; an event it gives is typed as TriggerEvent says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit.stream_lines import LineVerdict, read_line
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.gerrit_vocabulary import ACCOUNT_FIELDS
from tests.fuzz.shapes import GERRIT, assert_conforms, hostile_text, jsonl, keyed_values, mutated

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def events() -> list[dict[str, Any]]:
    return jsonl(GERRIT / "events-documented-2.13.jsonl") + jsonl(GERRIT / "events-wire-2.13.jsonl")


def check(line: str | bytes, legacy: bool = False) -> LineVerdict:
    verdict = read_line(line, legacy_approvals=legacy, max_length=64 * 1024)
    assert isinstance(verdict, LineVerdict)
    assert verdict.error is None or isinstance(verdict.error, EventParseError)
    if verdict.event is not None:
        assert_conforms(verdict.event, TriggerEvent)
        # What the scheduler does with every event must work on it too.
        str(verdict.event)
        verdict.event.changed_approvals()
    return verdict


@SETTINGS
@given(st.data(), st.booleans())
def test_mutated_real_events(data: st.DataObject, legacy: bool) -> None:
    event = data.draw(mutated(events()))
    check(json.dumps(event), legacy)
    check(json.dumps(event).encode(), legacy)


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(line: bytes) -> None:
    check(line)


# What fuzzing found, kept as examples so every run tries them: an event time
# of NaN or Infinity was taken as is (and broke the scheduler's comparisons).
_NAN_TIME = '{"type": "patchset-created", "change": {"project": "p", "number": 1}, '


@SETTINGS
@given(hostile_text)
@example(_NAN_TIME + '"eventCreatedOn": NaN}')
@example(_NAN_TIME + '"eventCreatedOn": Infinity}')
@example(_NAN_TIME + '"eventCreatedOn": 1e999}')
@example('{"type": "ref-updated", "refUpdate": {"project": "p"}, "eventCreatedOn": -Infinity}')
def test_hostile_text(line: str) -> None:
    check(line)
    check(line.encode("utf-8", "surrogatepass"))


#: Every key the event readers look up, at any depth.
EVENT_KEYS = [
    "type", "change", "patchSet", "refUpdate", "project", "projectName", "branch",
    "number", "id", "url", "ref", "refName", "revision", "oldRev", "newRev", "comment",
    "approvals", "value", "oldValue", "by", "username", "name", "email",
    "eventCreatedOn", "projectHead", *set(ACCOUNT_FIELDS.values()),
]  # fmt: skip


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(EVENT_KEYS), keyed_values(EVENT_KEYS), max_size=8),
    st.sampled_from([*ACCOUNT_FIELDS, "some-future-event", "dropped-output"]),
)
def test_events_of_any_shape(event: dict[str, Any], kind: str) -> None:
    event["type"] = kind
    check(json.dumps(event))
