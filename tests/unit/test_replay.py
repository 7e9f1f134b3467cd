"""The JSONL replay listener: every documented Gerrit line routes; bad lines are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.model.events import TriggerEvent
from listeners.replay import ReplayListener

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "gerrit"


def test_replays_the_documented_events_and_skips_bad_lines(tmp_path: Path) -> None:
    source = SHARED / "events-documented-2.13.jsonl"
    if not source.exists():
        pytest.skip(f"{source} is absent (../shared is not beside the repository)")
    lines = source.read_text().splitlines()
    mixed = tmp_path / "events.jsonl"
    mixed.write_text("\n".join([lines[0], "not json", '{"type": "from-the-future"}', *lines[1:]]))
    events: list[TriggerEvent] = []
    listener = ReplayListener(mixed)
    listener.run(events.append)
    # dropped-output yields no event; the two bad lines are skipped.
    dropped = sum('"dropped-output"' in line for line in lines)
    assert len(events) == len(lines) - dropped
    assert listener.skipped_lines == 2
    assert events[0].type == "patchset-created" and events[0].change == 123456
