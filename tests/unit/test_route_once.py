"""Each event is routed once for every pipeline, its change looked up at most once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.change import Change
from gatekeeper.scheduler.dryrun import change_from_event
from gatekeeper.scheduler.routing import Router

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
OPENSTACK = SHARED / "layouts" / "openstack-project-config-2015.yaml"
EVENTS = SHARED / "gerrit" / "events-documented-2.13.jsonl"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def layout() -> Layout:
    if not OPENSTACK.exists():
        pytest.skip(f"{OPENSTACK} is absent (../shared is not beside the repository)")
    return load_layout(OPENSTACK, includes=False)


def shape(kind: str) -> dict[str, object]:
    for line in EVENTS.read_text().splitlines():
        data = json.loads(line)
        if data["type"] == kind:
            return dict(data)
    raise LookupError(kind)


def test_an_approval_that_fires_two_pipelines_asks_for_the_change_once(layout: Layout) -> None:
    """Workflow+1 fires gate's trigger and check's (which re-checks a change
    jenkins voted down): two decisions, one look-up, one shared change."""
    data = shape("comment-added")
    data["comment"] = "Patch Set 1: Workflow+1"
    data["approvals"] = [
        {"type": "Workflow", "description": "Workflow", "value": "1", "oldValue": "0"}
    ]
    event = parse_event(json.dumps(data))
    assert event is not None and event.project == "openstack/nova"
    asked: list[Change | None] = []

    def lookup() -> Change | None:
        asked.append(change_from_event(event))
        return asked[-1]

    decisions = list(Router(layout).decisions(event, lookup))
    assert [d.pipeline for d in decisions] == ["check", "gate"]
    assert len(asked) == 1
    assert all(d.change is asked[0] for d in decisions)


def test_an_event_no_trigger_fires_asks_for_nothing(layout: Layout) -> None:
    data = shape("comment-added")
    data["comment"] = "Patch Set 1:\n\nLooks good to me"
    data["approvals"] = []
    event = parse_event(json.dumps(data))
    assert event is not None

    def lookup() -> Change | None:
        raise AssertionError("no pipeline wants the event: Gerrit is not asked")

    assert list(Router(layout).decisions(event, lookup)) == []
