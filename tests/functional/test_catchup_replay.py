"""Exact replay of missed events through Gerrit's events-log plugin.

The real daemon (scheduler, embedded Gearman, the SSH listener, the
catch-up thread, SQLite) against the Gerrit simulator, its SSH side for the
stream and its REST side (uvicorn) for the events-log plugin. The stream is
cut during a burst that merges two changes: their ``ref-updated`` events
are in no change query, so only the plugin can bring them back.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from gatekeeper.config.site import GerritHttpConfig
from gatekeeper.model.change import Change
from gatekeeper.sandbox.harness import change_id_for
from tests.functional import test_catchup as base

pytestmark = pytest.mark.timeout(120)

# The same fixture, under this module's name for it.
stack_factory = base.stack_factory

LAYOUT = r"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
jobs:
  - name: noop
    node: never-booted
    run: "true"
projects:
""" + "".join(f"  - name: {p}\n    check: [noop]\n    post: [noop]\n" for p in base.PROJECTS)


class Enqueues(logging.Handler):
    """Counts how often the scheduler acted on an event that wanted an item
    enqueued (enqueued, or "already in"), per (item, pipeline): a ref
    update's item names its new sha."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.acted: Counter[tuple[str, str]] = Counter()
        self._lock_counts = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg in ("enqueued %s in %s%s", "%s is already in %s") and args:
            if isinstance(args[0], Change):
                with self._lock_counts:
                    self.acted[(str(args[0]), str(args[1]))] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock_counts:
            return Counter(self.acted)


@pytest.mark.parametrize("version", ["3.11.1", "2.13"])
@pytest.mark.parametrize("plugin", [True, False], ids=["events-log", "query-only"])
def test_a_burst_missed_by_the_stream_is_acted_on_once(
    stack_factory: Callable[..., base.Stack], plugin: bool, version: str
) -> None:
    """Over REST (the replay, and the query-based catch-up without the
    plugin), in both dialects."""
    stack = stack_factory(gerrit=(version, "ssh"))
    sim = stack.sim
    (stack.root / "layout.yaml").write_text(LAYOUT)
    url = sim.start_http()
    sim.set_http_password("gatekeeper", "s3cret-http")
    sim.events_log(plugin)
    assert stack.site.gerrit is not None
    stack.site.gerrit.http = GerritHttpConfig(url=url, user="gatekeeper", password="s3cret-http")
    stack.start_daemon()
    enqueues = Enqueues()
    manager_log = logging.getLogger("gatekeeper.scheduler.manager")
    manager_log.addHandler(enqueues)
    try:
        app = stack.app
        assert app is not None and app.catch_up is not None
        project = "demo/alpha"
        first = [stack.push(project, change_id_for(f"first {i}"), f"{i}\n") for i in (1, 2)]
        before = {(f"{project} {n},{ps}", "check") for n, ps in first}
        base.wait_for(lambda: before <= set(enqueues.snapshot()), 30, "the first checks")

        # The stream goes during the burst; the listener is quick to come back
        # (and catches up at once), but the rest of the burst reaches no stream
        # either (withheld), until Gerrit says it dropped output.
        base.wait_for(lambda: sim.stream_count() == 1, 30, "the stream")
        sim.withhold_events(True)
        assert sim.cut_streams() == 1
        late = stack.push(project, change_id_for("late"), "late\n")
        tips = []
        for n, ps in first:
            stack.review("bob", n, ps, "", Code_Review=2, Verified=2, Workflow=1)
            stack.conn("bob").review(project, n, ps, submit=True)
            assert sim.get_change(n).status == "MERGED"
            tips.append(sim.branch_head(project))
        sim.withhold_events(False)
        base.wait_for(lambda: sim.stream_count() == 1, 30, "the stream to reconnect")
        sim.send_dropped_output()
        missed = [e["type"] for e in sim.events() if e["type"] == "ref-updated"]
        assert len(missed) == 2

        expected = before | {(f"{project} {late[0]},{late[1]}", "check")}
        posts = {(f"{project} refs/heads/master {tip[:7]}", "post") for tip in tips}
        if plugin:
            expected |= posts
        base.wait_for(lambda: expected <= set(enqueues.snapshot()), 60, "the missed events")
        base.settle_with_a_catch_up(stack)
        acted = enqueues.snapshot()
        # Each exactly once, the events acted on before the cut included
        # (the replay window starts before them).
        assert {key: acted[key] for key in expected} == dict.fromkeys(expected, 1)
        assert set(acted) == expected
        if plugin:
            assert app.catch_up.replays >= 1
        else:
            # A query cannot show a ref update: the post pipeline missed them.
            assert app.catch_up.replays == 0
            assert not posts & set(acted)
    finally:
        manager_log.removeHandler(enqueues)
