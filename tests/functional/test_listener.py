"""The stream-events listener and the Gerrit connection, against the simulator over SSH."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import GerritConfig
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.model.events import TriggerEvent
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from listeners.gerrit import GerritListener
from tests.fixtures.gerrit_sim import SimUser

pytestmark = pytest.mark.timeout(60)

PROJECT = "demo/project"
HOSTILE = "it's \"quoted\" $(touch /tmp/pwned) `id`; rm -rf / \\ \n--submit\n'; echo '"


def connection(user: SimUser) -> GerritConnection:
    return GerritConnection(
        GerritConfig(
            host=user.sim.host,
            port=user.sim.port,
            user=user.username,
            key=user.key,
            known_hosts=user.known_hosts,
        )
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        pause.wait(0.02)


class Running:
    """A listener in its own thread, collecting events."""

    def __init__(self, listener: GerritListener) -> None:
        self.listener = listener
        self.events: list[TriggerEvent] = []
        self.thread = threading.Thread(target=listener.run, args=(self.events.append,))

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.listener.connected.wait(20), "listener did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()

    def wait_type(self, kind: str) -> TriggerEvent:
        wait_for(lambda: any(e.type == kind for e in self.events))
        return next(e for e in self.events if e.type == kind)


@pytest.fixture
def ci(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("ci", groups=frozenset({"Non-Interactive Users"}))


@pytest.fixture
def change(
    sim_user: Callable[..., SimUser], gerrit_sim: GerritSimulator, tmp_path: Path
) -> Iterator[int]:
    """Change 1 on demo/project, pushed by alice with plain git."""
    alice = sim_user("alice")
    work = tmp_path / "work"
    alice.git("clone", "-q", gerrit_sim.git_url(PROJECT, "alice"), str(work))
    (work / "a.txt").write_text("a\n")
    alice.git("-C", str(work), "add", "a.txt")
    alice.git(
        "-C",
        str(work),
        "-c",
        "user.name=Alice",
        "-c",
        "user.email=alice@example.org",
        "commit",
        "-q",
        "-m",
        "Add a\n\nChange-Id: I" + "1" * 40 + "\n",
    )
    alice.git("-C", str(work), "push", "-q", "origin", "HEAD:refs/for/master")
    yield 1


def test_malformed_lines_are_logged_and_skipped(
    ci: SimUser, gerrit_sim: GerritSimulator, change: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="listeners.gerrit")
    listener = GerritListener(connection(ci), backoff_start=0.05, backoff_max=0.2)
    bad = [
        "this is not json",
        "[1, 2, 3]",
        '{"no": "type"}',
        '{"type": "patchset-created", "change": {"number": "abc"}, "patchSet": {}}',
        "{" + "x" * (10 * 1024 * 1024),
    ]
    with Running(listener) as running:
        for line in bad:
            gerrit_sim.send_raw_line(line)
        gerrit_sim.send_raw_line(json.dumps({"type": "some-future-event", "project": PROJECT}))
        status, _, err = ci.run(f"gerrit review --message still-listening {change},1")
        assert status == 0, err
        event = running.wait_type("comment-added")
        assert event.comment.endswith("still-listening")
    assert not any(e.type == "some-future-event" for e in running.events)
    assert listener.skipped_lines == len(bad) + 1
    text = caplog.text
    assert "this is not json" in text
    assert "unknown type 'some-future-event'" in text
    # The 10 MB line is reported, but not logged whole.
    assert max(len(r.getMessage()) for r in caplog.records) < 2000


def test_listener_reconnects_when_gerrit_restarts(
    ci: SimUser, gerrit_sim: GerritSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listeners.gerrit")
    listener = GerritListener(connection(ci), backoff_start=0.05, backoff_max=0.2)
    with Running(listener) as running:
        port = gerrit_sim.port
        gerrit_sim.stop()
        wait_for(lambda: not listener.connected.is_set())
        again = GerritSimulator(tmp_path / "gerrit", port=port)
        again.add_account(
            "ci",
            "Ci",
            "ci@example.org",
            Path(str(ci.key) + ".pub").read_text().strip(),
            {"Non-Interactive Users"},
        )
        again.start()
        try:
            assert listener.connected.wait(20)
            again.send_raw_line(
                json.dumps(
                    {
                        "type": "ref-updated",
                        "refUpdate": {
                            "oldRev": "1" * 40,
                            "newRev": "2" * 40,
                            "refName": "master",
                            "project": PROJECT,
                        },
                    }
                )
            )
            event = running.wait_type("ref-updated")
            assert (event.ref, event.branch) == ("refs/heads/master", "master")
        finally:
            again.stop()
    assert listener.reconnects >= 1
    assert "reconnecting in" in caplog.text


def test_unknown_host_key_is_refused(ci: SimUser, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = GerritConfig(
        host=ci.sim.host, port=ci.sim.port, user="ci", key=ci.key, known_hosts=empty
    )
    with pytest.raises(GerritError, match=r"not found in known_hosts|cannot connect"):
        GerritConnection(config).version()


def test_review_text_arrives_byte_for_byte(
    ci: SimUser, gerrit_sim: GerritSimulator, change: int
) -> None:
    gerrit = connection(ci)
    try:
        gerrit.review(PROJECT, change, 1, HOSTILE, {"Verified": 1})
        assert gerrit.query_change(change)["currentPatchSet"]["approvals"][0]["value"] == "1"
    finally:
        gerrit.close()
    stored = gerrit_sim.get_change(change)
    assert stored.messages[-1].text == HOSTILE
    assert stored.votes["Verified"] == {"ci": 1}
    assert stored.status == "NEW"  # the "--submit" line in the text submitted nothing
    assert not Path("/tmp/pwned").exists()
