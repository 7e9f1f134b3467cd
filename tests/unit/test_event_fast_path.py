"""The fast reader of well-formed event lines agrees with the careful one.

parse_event reads ordinary lines with ``_read_well_formed`` and leaves
anything unusual to ``_read``, the careful reader that decides what an event
becomes and how a bad line is reported. These tests change Gerrit's real
2.13 events, one field at a time for every field either reader looks at and
then at random, and check that wherever the fast reader gives an event the
careful reader gives the same one, and that it never accepts a line the
careful reader refuses. Whole lines (every one of the shared files, bad
lines, hostile and unicode text) go through parse_event twice, the second
time with the fast reader switched off: the same event, or the same error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.errors import EventParseError
from gatekeeper.gerrit import events
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.gerrit_vocabulary import MAX_EVENT_BYTES
from listeners.replay import ReplayListener

GERRIT = Path(__file__).resolve().parents[2].parent / "shared/testdata/gerrit"
# Gerrit's documented shapes, and the same events as 2.13 sent them (with a
# top-level project and refName the documentation leaves out).
SHAPES = [GERRIT / "events-documented-2.13.jsonl", GERRIT / "events-wire-2.13.jsonl"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def shapes() -> list[dict[str, Any]]:
    if not all(path.exists() for path in SHAPES):
        pytest.skip(f"{GERRIT} is absent (../shared is not beside the repository)")
    lines = [line for path in SHAPES for line in path.read_text().splitlines()]
    return [data for data in map(json.loads, lines) if data["type"] != "dropped-output"]


def comparable(event: TriggerEvent, data: dict[str, Any]) -> TriggerEvent:
    """The event without what depends on when it was read: the time it was
    received, and its creation time when Gerrit sent none (then it is now)."""
    created = event.created_on if data.get("eventCreatedOn") is not None else 0.0
    return dataclasses.replace(event, received_at=0.0, created_on=created)


def careful(data: dict[str, Any], legacy: bool) -> TriggerEvent | EventParseError:
    try:
        return events._read(events._Fields(json.dumps(data)), data, data["type"], legacy)
    except EventParseError as exc:
        return exc


def fast(data: dict[str, Any], legacy: bool) -> TriggerEvent | None:
    try:
        return events._read_well_formed(data, data["type"], legacy)
    except events._UnusualShapeError:
        return None


def test_ordinary_documented_lines_take_the_fast_path(shapes: list[dict[str, Any]]) -> None:
    ordinary = [d for d in shapes if d["type"] in events.ACCOUNT_FIELDS]
    assert len(ordinary) >= 30
    for data in ordinary:
        event = fast(data, legacy=False)
        assert event is not None, data["type"]
        expected = careful(data, legacy=False)
        assert isinstance(expected, TriggerEvent)
        assert comparable(event, data) == comparable(expected, data)


# What a field may be set to: right and wrong JSON types, and strings that
# are, or look like, numbers, refs and revisions.
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    7,
    -1,
    2.5,
    10**400,
    "",
    "x",
    " 7 ",
    "-1",
    "+2",
    "1_0",
    "0x1",
    "١٢",
    "master",
    "refs/heads/stable/kilo",
    "refs/tags/1.0",
    "0" * 40,
    [],
    ["x"],
    [{"type": "Code-Review", "value": "2"}],
    {},
    {"username": "u"},
]
ACCOUNTS = sorted({*events.ACCOUNT_FIELDS.values(), *events._ACCOUNT_FALLBACK})
# Every key either reader looks at.
KEYS = sorted(
    {
        *ACCOUNTS,
        *("approvals", "branch", "by", "change", "comment", "email", "eventCreatedOn", "id"),
        *("name", "newRev", "number", "oldRev", "oldValue", "patchSet", "project", "projectName"),
        *("projectHead", "ref", "refName", "refUpdate", "revision", "type", "url", "username"),
        "value",
    }
)
_DELETE = object()


def _objects(value: Any) -> list[dict[str, Any]]:
    """Every JSON object inside ``value``, itself included."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found.extend(_objects(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_objects(item))
    return found


def check_agreement(data: dict[str, Any], legacy: bool = False) -> None:
    """The fast reader gives up, or gives what the careful reader gives."""
    try:
        expected = careful(data, legacy)
    except OverflowError:
        # An eventCreatedOn too large for a float: parse_event fails as it always did.
        with pytest.raises(OverflowError):
            events.parse_event(json.dumps(data), legacy)
        return
    got = fast(data, legacy)
    if got is None:
        return
    assert isinstance(expected, TriggerEvent), f"the fast reader accepted a bad line: {expected}"
    assert comparable(got, data) == comparable(expected, data)


def _read_objects(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The event and the objects in it that either reader looks into."""
    inside = [data.get(key) for key in ("change", "patchSet", "refUpdate", *ACCOUNTS)]
    approvals = data.get("approvals")
    if isinstance(approvals, list):
        inside.extend(approvals)
        inside.extend(a.get("by") for a in approvals if isinstance(a, dict))
    return [data, *(o for o in inside if isinstance(o, dict))]


def test_every_single_change_to_a_field_read(shapes: list[dict[str, Any]]) -> None:
    """Each event with any one key either reader looks at (or the event
    has) set to each of VALUES or removed: in place, then put back."""
    for shape in shapes:
        data = copy.deepcopy(shape)
        for target in _read_objects(data):
            for key in sorted({*target, *KEYS}):
                before = target.get(key, _DELETE)
                for value in [*VALUES, _DELETE]:
                    if value is _DELETE:
                        target.pop(key, None)
                    else:
                        target[key] = value
                    if isinstance(data.get("type"), str) and data["type"]:
                        check_agreement(data)
                if before is _DELETE:
                    target.pop(key, None)
                else:
                    target[key] = before
        assert data == shape


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn, shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """A real event with a few keys, at any depth, set to other values or removed."""
    data = copy.deepcopy(draw(st.sampled_from(shapes)))
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(_objects(data)))
        key = draw(st.sampled_from(KEYS) | st.sampled_from(sorted(target) or KEYS))
        if draw(st.integers(0, 5)) == 0:
            target.pop(key, None)
        else:
            # A copy: a later mutation may land inside it, and VALUES must not change.
            target[key] = copy.deepcopy(draw(st.sampled_from(VALUES) | _values))
    if not isinstance(data.get("type"), str) or not data["type"]:
        # A line without a type never reaches either reader.
        data["type"] = draw(st.sampled_from(shapes))["type"]
    return data


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fast_reader_agrees_with_the_careful_one(
    shapes: list[dict[str, Any]], data: st.DataObject
) -> None:
    check_agreement(data.draw(mutated(shapes)), legacy=data.draw(st.booleans()))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_parse_event_gives_the_careful_readers_event_or_error(
    shapes: list[dict[str, Any]], data: st.DataObject
) -> None:
    event = data.draw(mutated(shapes))
    line = json.dumps(event)
    try:
        expected = careful(event, False)
    except OverflowError:
        return
    if isinstance(expected, EventParseError):
        with pytest.raises(EventParseError) as info:
            events.parse_event(line)
        assert str(info.value) == str(expected)
        return
    got = events.parse_event(line)
    assert got is not None
    assert comparable(got, event) == comparable(expected, event)


# -- whole lines, with and without the fast reader ------------------------------


@contextmanager
def careful_only() -> Iterator[None]:
    """parse_event as if the fast reader always gave up."""
    with mock.patch.object(events, "_read_well_formed", side_effect=events._UnusualShapeError):
        yield


def outcome(line: str | bytes, legacy: bool = False) -> tuple[str, Any]:
    """What parse_event makes of ``line``: ("event", comparable event), ("none", None)
    or ("error", message). Any other exception fails the test."""
    try:
        event = events.parse_event(line, legacy)
    except EventParseError as exc:
        return "error", str(exc)
    if event is None:
        return "none", None
    return "event", comparable(event, event.raw)


def assert_same_both_ways(line: str | bytes, legacy: bool = False) -> tuple[str, Any]:
    got = outcome(line, legacy)
    with careful_only():
        expected = outcome(line, legacy)
    assert got == expected
    return got


def test_trigger_event_fields_are_in_the_order_the_fast_reader_passes_them() -> None:
    """_read_well_formed builds a TriggerEvent by position (keywords cost as
    much as reading the rest of the line): a field added to TriggerEvent
    must go at the end, or the fast reader be changed with it."""
    assert [f.name for f in dataclasses.fields(TriggerEvent)] == [
        *("type", "project", "branch", "ref", "change", "patchset", "change_id"),
        *("change_url", "revision", "old_rev", "new_rev", "comment", "approvals"),
        *("account", "created_on", "received_at", "legacy_approvals", "raw"),
    ]


def _shared_lines() -> list[Any]:
    params = []
    for path in SHAPES:
        if not path.exists():
            reason = f"{path} is absent (../shared is not beside the repository)"
            params.append(pytest.param(None, id=path.name, marks=pytest.mark.skip(reason=reason)))
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            kind = json.loads(line)["type"]
            params.append(pytest.param(line, id=f"{path.stem}:{number}:{kind}"))
    return params


@pytest.mark.parametrize("legacy", [False, True], ids=["2.13", "legacy"])
@pytest.mark.parametrize("line", _shared_lines())
def test_every_shared_line_reads_the_same_both_ways(line: str, legacy: bool) -> None:
    """Every event type in the shared files, as text and as bytes; the
    ordinary ones (a type with a known account field) take the fast path."""
    data = json.loads(line)
    kind, event = assert_same_both_ways(line, legacy)
    assert assert_same_both_ways(line.encode(), legacy) == (kind, event)
    if data["type"] == "dropped-output":
        assert kind == "none"
        return
    assert kind == "event"
    if data["type"] in events.ACCOUNT_FIELDS:
        assert fast(data, legacy) is not None


def _deep(depth: int, key: str | None = None) -> str:
    """JSON nested ``depth`` deep: lists, or objects under ``key``."""
    if key is None:
        return "[" * depth + "]" * depth
    return f'{{"{key}": ' * depth + "1" + "}" * depth


PATCHSET = (
    '{"type": "patchset-created", "change": {"project": "p", "branch": "master", '
    '"number": "7"}, "patchSet": {"number": "1", "ref": "refs/changes/07/7/1"}, '
    '"uploader": {"username": "u"}, "eventCreatedOn": 1480000000'
)
# Lines the careful reader refuses: the listener logs them and goes on.
MALFORMED = [
    pytest.param("this is not json", id="not-json"),
    pytest.param("{", id="truncated"),
    pytest.param(PATCHSET, id="truncated-event"),
    pytest.param('{"type": "patchset-created"} trailing', id="trailing-text"),
    pytest.param('["a", "list"]', id="list"),
    pytest.param('"a string"', id="string"),
    pytest.param("null", id="null"),
    pytest.param("{}", id="empty-object"),
    pytest.param('{"type": ""}', id="empty-type"),
    pytest.param('{"type": 3}', id="type-number"),
    pytest.param('{"type": null}', id="type-null"),
    pytest.param('{"type": ["patchset-created"]}', id="type-list"),
    pytest.param(b'{"type": "comment-added", "comment": "\xff\xfe"}', id="not-utf8"),
    pytest.param(b"\xef\xbb\xbf" + PATCHSET.encode() + b"}", id="utf8-bom"),
    pytest.param(
        '{"type": "comment-added", "comment": "' + "x" * (MAX_EVENT_BYTES + 1) + '"}', id="too-long"
    ),
    pytest.param(_deep(100_000), id="nested-list"),
    pytest.param(_deep(100_000, "change"), id="nested-object"),
    pytest.param(PATCHSET + ', "eventCreatedOn": ' + "9" * 400 + "}", id="created-huge"),
    pytest.param(PATCHSET + ', "eventCreatedOn": "1480000000"}', id="created-string"),
    pytest.param(PATCHSET + ', "eventCreatedOn": true}', id="created-bool"),
    pytest.param(PATCHSET + ', "change": []}', id="change-list"),
    pytest.param(PATCHSET + ', "change": {"project": 5}}', id="project-number"),
    pytest.param(PATCHSET + ', "change": {"project": "p", "number": "7a"}}', id="number-7a"),
    pytest.param(PATCHSET + ', "change": {"project": "p", "number": 7.0}}', id="number-float"),
    pytest.param(PATCHSET + ', "change": {"project": "p", "number": true}}', id="number-bool"),
    pytest.param(PATCHSET + ', "patchSet": "1"}', id="patchset-string"),
    pytest.param(PATCHSET + ', "uploader": "u"}', id="account-string"),
    pytest.param(PATCHSET + ', "uploader": {"email": 5}}', id="email-number"),
    pytest.param(PATCHSET + ', "comment": {"text": "x"}}', id="comment-object"),
    pytest.param(PATCHSET + ', "approvals": {"Verified": 1}}', id="approvals-object"),
    pytest.param(PATCHSET + ', "approvals": ["Verified"]}', id="approval-string"),
    pytest.param(PATCHSET + ', "approvals": [{"value": "1"}]}', id="approval-no-type"),
    pytest.param(PATCHSET + ', "approvals": [{"type": "V"}]}', id="approval-no-value"),
    pytest.param(PATCHSET + ', "approvals": [{"type": "V", "value": "+1x"}]}', id="vote-text"),
    pytest.param(
        PATCHSET + ', "approvals": [{"type": "V", "value": ' + _deep(2_000) + "}]}",
        id="vote-nested",
    ),
    pytest.param(
        '{"type": "ref-updated", "refUpdate": {"project": "p", "refName": 5}}', id="refname-number"
    ),
    pytest.param(
        '{"type": "ref-updated", "refUpdate": {"project": "p", "newRev": ["0"]}}', id="newrev-list"
    ),
]


@pytest.mark.parametrize("line", MALFORMED)
def test_malformed_lines_are_refused_as_the_careful_reader_refuses_them(
    line: str | bytes,
) -> None:
    kind, message = assert_same_both_ways(line)
    assert kind == "error"
    assert len(message) < 600


@pytest.mark.parametrize("depth", range(sys.getrecursionlimit() - 120, sys.getrecursionlimit() + 5))
def test_nesting_near_the_recursion_limit_is_a_parse_error(depth: int) -> None:
    """However deep, a value nested in a field is refused, never a RecursionError."""
    for line in (
        _deep(depth),
        PATCHSET + ', "change": {"project": "p", "number": ' + _deep(depth) + "}}",
        PATCHSET + ', "eventCreatedOn": ' + _deep(depth, "x") + "}",
    ):
        assert assert_same_both_ways(line)[0] == "error"


# Text Gerrit passes through from users: commit subjects, comments, names.
HOSTILE = [
    "",
    " ",
    "\u2003",
    "é☃🚀 Ünïcödé",
    "مرحبا",
    "\u202eevil\u202c",
    "a\u0000b",
    "\ud800",
    "\udfff\ud800",
    "\ufeff",
    "line\r\nnext\n",
    "it's \"quoted\" $(touch /tmp/pwned) `id`; rm -rf / \\ \n--submit\n'; echo '",
    "<script>alert(1)</script>",
    "%s %d %(x)s {0} {x}",
    "refs/heads/../../etc/passwd",
    "refs/",
    "refs/heads/",
    "refs/tags/ü",
    "master\n",
    " master",
    "١٢",
    "x" * 100_000,
]
TEXT_FIELDS = [
    ("change", "project"),
    ("change", "branch"),
    ("change", "id"),
    ("change", "subject"),
    ("patchSet", "ref"),
    ("patchSet", "revision"),
    ("refUpdate", "project"),
    ("refUpdate", "refName"),
    ("refUpdate", "newRev"),
    (None, "comment"),
    (None, "project"),
    (None, "newRev"),
    ("author", "username"),
    ("uploader", "email"),
    ("submitter", "name"),
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: ascii(t)[:24])
def test_hostile_and_unicode_text_reads_the_same_both_ways(
    shapes: list[dict[str, Any]], text: str
) -> None:
    """Each text field of each real event set to the text, sent as JSON
    with escapes and as raw UTF-8 (where the text can be encoded)."""
    for shape in shapes:
        for where, key in TEXT_FIELDS:
            data = copy.deepcopy(shape)
            target = data if where is None else data.get(where)
            if not isinstance(target, dict):
                continue
            target[key] = text
            check_agreement(data)
            assert_same_both_ways(json.dumps(data))
            try:
                raw = json.dumps(data, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                continue  # a lone surrogate: no UTF-8 line can carry it
            assert_same_both_ways(raw)


@pytest.mark.parametrize("key", ["change", "patchSet", "refUpdate", "eventCreatedOn", "type"])
def test_missing_fields_read_the_same_both_ways(shapes: list[dict[str, Any]], key: str) -> None:
    """Whole sections missing, and every key of each section missing in turn."""
    for shape in shapes:
        data = copy.deepcopy(shape)
        data.pop(key, None)
        assert_same_both_ways(json.dumps(data))
        section = shape.get(key)
        for inner in sorted(section) if isinstance(section, dict) else []:
            data = copy.deepcopy(shape)
            del data[key][inner]
            assert_same_both_ways(json.dumps(data))


def test_refused_lines_are_logged_and_skipped_by_the_replayer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The replayer (as the SSH listener) logs a refused line and reads on."""
    good = json.dumps(
        {
            "type": "patchset-created",
            "change": {"project": "p", "branch": "master", "number": "7"},
            "patchSet": {"number": "1", "ref": "refs/changes/07/7/1"},
            "uploader": {"username": "u"},
        }
    )
    bad = [p.values[0] for p in MALFORMED if isinstance(p.values[0], str)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([good, *bad, good]) + "\n")
    got: list[TriggerEvent] = []
    with caplog.at_level(logging.ERROR, logger="listeners.replay"):
        ReplayListener(path).run(got.append)
    assert [e.change for e in got] == [7, 7]
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == len(bad)
