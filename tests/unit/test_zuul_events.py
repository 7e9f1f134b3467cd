"""The zuul trigger events cost Gerrit queries only when some pipeline
listens, and a Gerrit that cannot be reached loses the events (logged),
never the scheduler thread's pass.

Gerrit here is a port nothing listens on: a real connection refused at once.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.site import GerritConfig
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.source import GerritSource
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.zuul_events import ZuulEvents

pytestmark = pytest.mark.timeout(30)

PIPELINES = """
pipelines:
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
{extra}
jobs:
  - name: unit
projects:
  - name: openstack/nova
    gate: [unit]
"""

LISTENING = """
  - name: merge-check
    manager: independent
    trigger:
      zuul:
        - event: project-change-merged
  - name: follow
    manager: independent
    trigger:
      zuul:
        - event: parent-change-enqueued
"""


def layout_of(tmp_path: Path, extra: str) -> Layout:
    path = tmp_path / "layout.yaml"
    path.write_text(PIPELINES.format(extra=extra))
    return load_layout(path)


@pytest.fixture
def unreachable(tmp_path: Path) -> GerritSource:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket is closed: connections to the port are refused.
    config = GerritConfig(host="127.0.0.1", port=port, user="gatekeeper", key=tmp_path / "key")
    return GerritSource(GerritConnection(config))


MERGED = Change(
    "openstack/nova", "master", 7, 1, ref="refs/changes/07/7/1", change_id="I" + "a" * 40
)


def test_no_pipeline_listens_no_query(
    tmp_path: Path, unreachable: GerritSource, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[TriggerEvent] = []
    zuul = ZuulEvents(unreachable, events.append)
    layout = layout_of(tmp_path, "")
    zuul.enqueued(layout, MERGED, "gate")
    zuul.merged(layout, MERGED)
    # Gerrit is unreachable: any query would have been logged as failing.
    assert events == [] and caplog.records == []


def test_an_unreachable_gerrit_loses_the_events_with_a_warning(
    tmp_path: Path, unreachable: GerritSource, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[TriggerEvent] = []
    zuul = ZuulEvents(unreachable, events.append)
    layout = layout_of(tmp_path, LISTENING)
    with caplog.at_level(logging.WARNING, logger="gatekeeper.scheduler.zuul_events"):
        zuul.enqueued(layout, MERGED, "gate")
        zuul.merged(layout, MERGED)
    assert events == []
    said = [r.getMessage() for r in caplog.records if r.name.endswith("zuul_events")]
    assert len(said) == 2
    assert said[0].startswith("no parent-change-enqueued events for openstack/nova 7,1")
    assert said[1].startswith("no project-change-merged events for openstack/nova")
