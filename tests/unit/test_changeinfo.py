"""One change read both ways: ``gerrit query`` over SSH and the REST API's
ChangeInfo (plus the revision's related changes) turned into a query row by
:func:`row_from_change_info`. Both come from the same simulator, in both
dialects, for changes with several patch sets, a git dependency, votes,
comments and files; what gatekeeper makes of them must be the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config.site import GerritConfig
from gatekeeper.gerrit.catchup import CATCHUP_OPTIONS, synthesize
from gatekeeper.gerrit.changeinfo import RestChanges
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.rest import GerritRest
from gatekeeper.gerrit.source import GerritSource, change_from_query, comments_since
from gatekeeper.model.events import TriggerEvent
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from gatekeeper.scheduler.reporter import unmet_requirements
from tests.fixtures.gerrit_sim import SimUser
from tests.unit.test_gerrit_sim import clone, commit, new_change_id, push

pytestmark = pytest.mark.timeout(60)

PASSWORD = "http-pw-of-ci"


@pytest.fixture(params=["3.11.1", "2.13"])
def gerrit_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def both(
    gerrit_sim: GerritSimulator, sim_user: Callable[..., SimUser], tmp_path: Path
) -> Iterator[tuple[GerritConnection, RestChanges]]:
    """The same account's SSH and REST change reads, after: change 1 with two
    patch sets, votes and a comment; change 2 on top of it (a git child)."""
    ci = sim_user("ci", frozenset({"Administrators"}))
    alice = sim_user("alice")
    work = clone(alice, gerrit_sim, tmp_path / "work")
    change_id = new_change_id()
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nChange-Id: {change_id}\n")
    push(alice, work)
    commit(alice, work, "a.txt", "a\nb\n", f"Add a and b\n\nChange-Id: {change_id}\n")
    alice.git("-C", str(work), "reset", "-q", "--soft", "HEAD~1")
    alice.git("-C", str(work), "commit", "-q", "-m", f"Add a and b\n\nChange-Id: {change_id}\n")
    push(alice, work)
    commit(alice, work, "b.txt", "b\n", f"Add b\n\nChange-Id: {new_change_id()}\n")
    push(alice, work)
    status, _, err = ci.run("gerrit review --label Code-Review=+2 --message 'fine work' 1,2")
    assert status == 0, err
    status, _, err = ci.run("gerrit review --label Verified=-1 --message 'it broke' 2,1")
    assert status == 0, err
    gerrit_sim.set_http_password("ci", PASSWORD)
    url = gerrit_sim.start_http()
    config = GerritConfig.model_validate(
        {
            "host": gerrit_sim.host,
            "port": gerrit_sim.port,
            "user": "ci",
            "key": ci.key,
            "known_hosts": ci.known_hosts,
            "web-url": gerrit_sim.state.web_url,
            "http": {"url": url, "user": "ci", "password": PASSWORD},
        }
    )
    assert config.http is not None
    ssh = GerritConnection(config)
    rest = RestChanges(config, GerritRest(config.http))
    try:
        yield ssh, rest
    finally:
        ssh.close()
        rest.close()


def test_the_same_change_comes_out_of_both(
    both: tuple[GerritConnection, RestChanges],
) -> None:
    ssh, rest = both
    for number in (1, 2):
        ssh_row, rest_row = ssh.query_change(number), rest.query_change(number)
        assert ssh_row is not None and rest_row is not None
        assert change_from_query(rest_row) == change_from_query(ssh_row), number
        # What "can this merge" reads before a submit.
        assert rest_row["submitRecords"] == ssh_row["submitRecords"], number
        for votes in ({}, {"Verified": 2}, {"Verified": 2, "Workflow": 1}):
            assert unmet_requirements(rest_row, "ci", votes) == unmet_requirements(
                ssh_row, "ci", votes
            )
    first = change_from_query(rest.query_change(1) or {})
    # What the comparison covers is there, not two empty reads alike.
    assert first.patchset == 2 and first.git_children == [2]
    assert first.approvals == {"Code-Review": {"ci": 2}}
    assert first.files == ["/COMMIT_MSG", "a.txt"]
    second = change_from_query(rest.query_change(2) or {})
    assert second.git_parents == [(1, True)] and second.approvals == {"Verified": {"ci": -1}}


def test_source_lookups_and_read_backs_agree(
    both: tuple[GerritConnection, RestChanges],
) -> None:
    ssh, rest = both
    by_ssh, by_rest = GerritSource(ssh), GerritSource(rest)
    one = by_ssh.get_change(1)
    assert one is not None
    assert by_rest.changes_depending_on(one) == by_ssh.changes_depending_on(one)
    assert [c.number for c in by_rest.changes_depending_on(one)] == [2]
    assert by_rest.changes_with_id(one.change_id) == by_ssh.changes_with_id(one.change_id)
    ssh_rows = ssh.query_all("status:open", *CATCHUP_OPTIONS)
    rest_rows = rest.query_all("status:open", *CATCHUP_OPTIONS)

    # The catch-up makes the same events of both (received_at is the
    # reader's own clock, not Gerrit's).
    def made(rows: list[dict[str, Any]]) -> list[TriggerEvent]:
        return [replace(e, received_at=0.0) for e in synthesize(rows, 0)]

    assert made(rest_rows) == made(ssh_rows)
    assert {e.type for e in made(rest_rows)} >= {"patchset-created", "comment-added"}
    ssh_row, rest_row = ssh.query("change:1", "--comments")[0], rest.query_change(1) or {}
    assert list(comments_since(rest_row, "ci", 0)) == list(comments_since(ssh_row, "ci", 0))
    assert any("fine work" in m for m in comments_since(rest_row, "ci", 0))
