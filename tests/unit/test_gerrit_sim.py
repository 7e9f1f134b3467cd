"""The Gerrit simulator, driven the way gatekeeper and people use a real Gerrit:
real ``git clone``/``git push`` over OpenSSH, gerrit commands over paramiko
with the host key checked, and events compared with Gerrit 2.13's wire shape.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest

from gatekeeper.gerrit import cmdline
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from tests.fixtures.gerrit_sim import SimUser

SHARED = Path(__file__).parents[2].parent / "shared" / "testdata" / "gerrit"
PROJECT = "demo/project"


def wire_events() -> list[dict[str, Any]]:
    path = SHARED / "events-wire-2.13.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not found (the shared test data is not checked out)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wire_event(kind: str) -> dict[str, Any]:
    return next(e for e in wire_events() if e["type"] == kind)


def shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def new_change_id() -> str:
    return "I" + secrets.token_hex(20)


def clone(user: SimUser, sim: GerritSimulator, dest: Path) -> Path:
    user.git("clone", "-q", sim.git_url(PROJECT, user.username), str(dest))
    user.git("-C", str(dest), "config", "user.name", user.username.title())
    user.git("-C", str(dest), "config", "user.email", f"{user.username}@example.org")
    return dest


def commit(user: SimUser, work: Path, name: str, text: str, message: str) -> str:
    (work / name).write_text(text)
    user.git("-C", str(work), "add", name)
    user.git("-C", str(work), "commit", "-q", "-m", message)
    return user.git("-C", str(work), "rev-parse", "HEAD").strip()


def push(user: SimUser, work: Path, ref: str = "refs/for/master") -> str:
    return user.git("-C", str(work), "push", "-q", "origin", f"HEAD:{ref}")


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        threading.Event().wait(0.01)


@pytest.fixture
def alice(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("alice")


@pytest.fixture
def ci(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("ci", groups=frozenset({"Non-Interactive Users"}))


@pytest.fixture
def work(alice: SimUser, gerrit_sim: GerritSimulator, tmp_path: Path) -> Path:
    return clone(alice, gerrit_sim, tmp_path / "work")


@pytest.fixture
def change1(alice: SimUser, work: Path) -> str:
    """Change 1, patch set 1, pushed by alice; returns its Change-Id."""
    change_id = new_change_id()
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nBody.\n\nChange-Id: {change_id}\n")
    push(alice, work)
    return change_id


def review(user: SimUser, *args: str) -> tuple[int, str, str]:
    return user.run(cmdline.join(["gerrit", "review", *args]))


def test_version(alice: SimUser) -> None:
    status, out, err = alice.run("gerrit version")
    assert (status, err) == (0, "")
    assert out.startswith("gerrit version ") and out.endswith("\n")


def test_unknown_command_fails(alice: SimUser) -> None:
    status, out, err = alice.run("gerrit frobnicate --now")
    assert status == 1 and out == ""
    assert err.startswith("fatal: ")


def test_unknown_key_is_refused(gerrit_sim: GerritSimulator, tmp_path: Path) -> None:
    from tests.fixtures.gerrit_sim import make_ssh_key

    make_ssh_key(tmp_path / "stranger")
    known_hosts = tmp_path / "kh"
    known_hosts.write_text(gerrit_sim.known_hosts_line() + "\n")
    user = SimUser("stranger", tmp_path / "stranger", known_hosts, gerrit_sim)
    with pytest.raises(paramiko.AuthenticationException):
        user.client()


# The shapes compared are real 2.13 events (shared testdata).
@pytest.mark.parametrize("gerrit_version", ["2.13"])
def test_push_creates_change_and_emits_wire_shaped_event(
    gerrit_sim: GerritSimulator, alice: SimUser, work: Path
) -> None:
    change_id = new_change_id()
    sha = commit(alice, work, "a.txt", "a\nb\n", f"Add a\n\nChange-Id: {change_id}\n")
    push(alice, work)

    change = gerrit_sim.get_change(1)
    assert (change.project, change.branch, change.change_id) == (PROJECT, "master", change_id)
    assert change.status == "NEW" and change.subject == "Add a"
    assert [(ps.number, ps.revision, ps.ref) for ps in change.patchsets] == [
        (1, sha, "refs/changes/01/1/1")
    ]
    [event] = gerrit_sim.events()
    assert shape(event) == shape(wire_event("patchset-created"))
    assert event["change"]["number"] == "1" and event["patchSet"]["number"] == "1"
    assert event["patchSet"]["revision"] == sha
    assert event["patchSet"]["sizeInsertions"] == 2
    assert event["change"]["commitMessage"] == f"Add a\n\nChange-Id: {change_id}\n"
    assert event["uploader"]["username"] == "alice"
    assert event["refName"] == "refs/heads/master"
    assert event["changeKey"] == {"id": change_id}
    # refs/for/* is consumed; the change ref is fetchable.
    assert "refs/for/" not in alice.git("ls-remote", gerrit_sim.git_url(PROJECT, "alice"))


def test_second_push_with_same_change_id_is_patchset_2(
    gerrit_sim: GerritSimulator, alice: SimUser, work: Path, change1: str
) -> None:
    alice.git(
        "-C", str(work), "commit", "-q", "--amend", "-m", f"Add a, v2\n\nChange-Id: {change1}\n"
    )
    push(alice, work)
    change = gerrit_sim.get_change(1)
    assert [ps.number for ps in change.patchsets] == [1, 2]
    assert change.patchsets[1].ref == "refs/changes/01/1/2"
    assert change.subject == "Add a, v2"
    assert [e["type"] for e in gerrit_sim.events()] == ["patchset-created"] * 2


def test_push_without_change_id_is_rejected(
    gerrit_sim: GerritSimulator, alice: SimUser, work: Path
) -> None:
    commit(alice, work, "a.txt", "a\n", "No footer here")
    with pytest.raises(AssertionError, match="missing Change-Id"):
        push(alice, work)
    assert gerrit_sim.events() == []


def test_direct_push_to_branch_is_rejected(
    gerrit_sim: GerritSimulator, alice: SimUser, work: Path
) -> None:
    head = gerrit_sim.branch_head(PROJECT)
    commit(alice, work, "a.txt", "a\n", f"Sneaky\n\nChange-Id: {new_change_id()}\n")
    with pytest.raises(AssertionError, match="prohibited push"):
        push(alice, work, "refs/heads/master")
    assert gerrit_sim.branch_head(PROJECT) == head


def test_unknown_project_and_traversal_are_refused(alice: SimUser, tmp_path: Path) -> None:
    for name in ("nope", "../demo/project", "/etc/passwd"):
        status, _, err = alice.run(f"git-upload-pack '{name}'")
        assert status == 1 and "not found" in err


def test_fetch_change_ref(
    gerrit_sim: GerritSimulator, alice: SimUser, tmp_path: Path, change1: str
) -> None:
    other = clone(alice, gerrit_sim, tmp_path / "other")
    alice.git("-C", str(other), "fetch", "-q", "origin", "refs/changes/01/1/1")
    fetched = alice.git("-C", str(other), "rev-parse", "FETCH_HEAD").strip()
    assert fetched == gerrit_sim.get_change(1).patchsets[0].revision


# The shapes compared are real 2.13 events (shared testdata).
@pytest.mark.parametrize("gerrit_version", ["2.13"])
def test_votes_emit_comment_added_with_old_value_semantics(
    gerrit_sim: GerritSimulator, alice: SimUser, change1: str
) -> None:
    assert review(alice, "1,1", "--code-review", "+2", "-m", "Looks good.")[0] == 0
    assert review(alice, "1,1", "--label", "workflow=1")[0] == 0
    assert review(alice, "1,1", "-m", "recheck")[0] == 0

    comments = [e for e in gerrit_sim.events() if e["type"] == "comment-added"]
    assert shape(comments[0]) == shape(wire_event("comment-added"))
    assert comments[0]["comment"] == "Patch Set 1: Code-Review+2\n\nLooks good."
    assert comments[0]["approvals"] == [
        {"type": "Code-Review", "description": "Code-Review", "value": "2", "oldValue": "0"}
    ]
    assert comments[1]["comment"] == "Patch Set 1: Workflow+1"
    assert comments[1]["approvals"] == [
        {"type": "Code-Review", "description": "Code-Review", "value": "2"},
        {"type": "Workflow", "description": "Workflow", "value": "1", "oldValue": "0"},
    ]
    assert comments[2]["comment"] == "Patch Set 1:\n\nrecheck"
    assert all("oldValue" not in a for a in comments[2]["approvals"])
    assert gerrit_sim.get_change(1).votes == {
        "Code-Review": {"alice": 2},
        "Workflow": {"alice": 1},
    }


def test_out_of_range_and_unknown_votes(
    gerrit_sim: GerritSimulator, alice: SimUser, change1: str
) -> None:
    assert review(alice, "1,1", "--label", "Code-Review=3", "--label", "Bogus=1")[0] == 0
    assert gerrit_sim.get_change(1).votes == {}
    status, _, err = review(alice, "1,1", "--strict-labels", "--label", "Code-Review=3")
    assert status == 1 and "not permitted" in err
    assert [r.exit_status for r in gerrit_sim.reviews()] == [0, 1]


def test_submit_needs_approvals(gerrit_sim: GerritSimulator, alice: SimUser, change1: str) -> None:
    head = gerrit_sim.branch_head(PROJECT)
    status, _, err = review(alice, "1,1", "--code-review", "2", "--submit")
    assert status == 1 and "needs Verified" in err and "needs Workflow" in err
    assert gerrit_sim.get_change(1).status == "NEW"
    assert gerrit_sim.branch_head(PROJECT) == head
    assert gerrit_sim.reviews()[-1].submit is True


# The shapes compared are real 2.13 events (shared testdata).
@pytest.mark.parametrize("gerrit_version", ["2.13"])
def test_submit_fast_forwards(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, change1: str
) -> None:
    old = gerrit_sim.branch_head(PROJECT)
    assert review(alice, "1,1", "--code-review", "2", "--label", "Workflow=+1")[0] == 0
    status, _, err = review(ci, "1,1", "--verified", "2", "--submit", "-m", "Gate passed")
    assert (status, err) == (0, "")
    change = gerrit_sim.get_change(1)
    assert change.status == "MERGED"
    assert gerrit_sim.branch_head(PROJECT) == change.patchsets[0].revision
    kinds = [e["type"] for e in gerrit_sim.events()]
    assert kinds[-3:] == ["comment-added", "change-merged", "ref-updated"]
    merged, updated = gerrit_sim.events()[-2:]
    assert shape(merged) == shape(wire_event("change-merged"))
    assert shape(updated) == shape(wire_event("ref-updated"))
    assert merged["newRev"] == change.patchsets[0].revision
    assert updated["refUpdate"] == {
        "oldRev": old,
        "newRev": change.patchsets[0].revision,
        "refName": "refs/heads/master",
        "project": PROJECT,
    }
    assert updated["submitter"]["username"] == "ci"


def test_submit_creates_merge_commit_when_branch_moved(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, tmp_path: Path
) -> None:
    first = clone(alice, gerrit_sim, tmp_path / "first")
    second = clone(alice, gerrit_sim, tmp_path / "second")
    commit(alice, first, "a.txt", "a\n", f"Add a\n\nChange-Id: {new_change_id()}\n")
    push(alice, first)
    commit(alice, second, "b.txt", "b\n", f"Add b\n\nChange-Id: {new_change_id()}\n")
    push(alice, second)
    for number in (1, 2):
        review(alice, f"{number},1", "--code-review", "2", "--label", "Workflow=1")
        assert review(ci, f"{number},1", "--verified", "2", "--submit")[0] == 0
    head = gerrit_sim.branch_head(PROJECT)
    merged = [e for e in gerrit_sim.events() if e["type"] == "change-merged"]
    assert merged[-1]["newRev"] == head
    check = clone(alice, gerrit_sim, tmp_path / "check")
    parents = alice.git("-C", str(check), "log", "-1", "--format=%P").split()
    assert parents == [merged[0]["newRev"], gerrit_sim.get_change(2).patchsets[0].revision]
    assert (check / "a.txt").exists() and (check / "b.txt").exists()


def test_submit_of_child_before_parent_fails(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, work: Path, change1: str
) -> None:
    commit(alice, work, "b.txt", "b\n", f"Add b\n\nChange-Id: {new_change_id()}\n")
    push(alice, work)
    assert gerrit_sim.get_change(2).depends_on == [1]
    review(alice, "2,1", "--code-review", "2", "--label", "Workflow=1")
    status, _, err = review(ci, "2,1", "--verified", "2", "--submit")
    assert status == 1 and "depends on change that was not submitted" in err
    for number in (1, 2):
        review(alice, f"{number},1", "--code-review", "2", "--label", "Workflow=1")
        assert review(ci, f"{number},1", "--verified", "2", "--submit")[0] == 0
    assert gerrit_sim.branch_head(PROJECT) == gerrit_sim.get_change(2).patchsets[0].revision


def test_submit_merge_conflict_fails(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, tmp_path: Path
) -> None:
    first = clone(alice, gerrit_sim, tmp_path / "first")
    second = clone(alice, gerrit_sim, tmp_path / "second")
    commit(alice, first, "README", "one\n", f"One\n\nChange-Id: {new_change_id()}\n")
    push(alice, first)
    commit(alice, second, "README", "two\n", f"Two\n\nChange-Id: {new_change_id()}\n")
    push(alice, second)
    for number in (1, 2):
        review(alice, f"{number},1", "--code-review", "2", "--label", "Workflow=1")
    assert review(ci, "1,1", "--verified", "2", "--submit")[0] == 0
    head = gerrit_sim.branch_head(PROJECT)
    status, _, err = review(ci, "2,1", "--verified", "2", "--submit")
    assert status == 1 and "merge conflict" in err
    assert gerrit_sim.branch_head(PROJECT) == head
    assert gerrit_sim.get_change(2).status == "NEW"


def test_hostile_message_is_stored_byte_for_byte(
    gerrit_sim: GerritSimulator, alice: SimUser, change1: str
) -> None:
    message = 'It\'s "fine" $(rm -rf /) `id`;\n\\ back\\slash\n\ttab  é 中 \U0001f600\n'
    status, _, err = review(alice, "1,1", "--message", message)
    assert (status, err) == (0, "")
    assert gerrit_sim.reviews()[-1].message == message
    assert gerrit_sim.get_change(1).messages[-1].text == message
    assert gerrit_sim.events()[-1]["comment"] == f"Patch Set 1:\n\n{message}"


# The shapes compared are real 2.13 events (shared testdata).
@pytest.mark.parametrize("gerrit_version", ["2.13"])
def test_abandon_and_restore(gerrit_sim: GerritSimulator, alice: SimUser, work: Path) -> None:
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nChange-Id: {new_change_id()}\n")
    push(alice, work, "refs/for/master%topic=cleanup")
    assert review(alice, "1,1", "--abandon", "-m", "Not needed")[0] == 0
    assert gerrit_sim.get_change(1).status == "ABANDONED"
    abandoned = gerrit_sim.events()[-1]
    assert shape(abandoned) == shape(wire_event("change-abandoned"))
    assert abandoned["reason"] == "Not needed"
    assert abandoned["change"]["topic"] == "cleanup"
    assert review(alice, "1,1", "--restore")[0] == 0
    assert gerrit_sim.get_change(1).status == "NEW"
    assert gerrit_sim.events()[-1]["type"] == "change-restored"


def test_review_by_commit_sha(gerrit_sim: GerritSimulator, alice: SimUser, change1: str) -> None:
    sha = gerrit_sim.get_change(1).patchsets[0].revision
    assert review(alice, sha[:10], "--project", PROJECT, "--code-review", "-1")[0] == 0
    assert gerrit_sim.get_change(1).votes == {"Code-Review": {"alice": -1}}


# The shapes compared are real 2.13 events (shared testdata).
@pytest.mark.parametrize("gerrit_version", ["2.13"])
def test_query_shapes(
    gerrit_sim: GerritSimulator, alice: SimUser, work: Path, change1: str
) -> None:
    child_id = new_change_id()
    commit(alice, work, "b.txt", "b\n", f"Add b\n\nChange-Id: {child_id}\n")
    push(alice, work)
    review(alice, "2,1", "--code-review", "2")

    options = "--current-patch-set --all-approvals --dependencies --submit-records"
    status, out, _ = alice.run(f"gerrit query --format JSON {options} --commit-message change:2")
    assert status == 0
    row, stats = (json.loads(line) for line in out.splitlines())
    example = SHARED / "query-example-2.13.jsonl"
    if example.exists():
        ref_row = json.loads(example.read_text().splitlines()[0])
        assert set(row) == set(ref_row)
        assert shape(row["currentPatchSet"]["approvals"]) == shape(
            ref_row["currentPatchSet"]["approvals"]
        )
        code_review = row["submitRecords"][0]["labels"][1]
        assert code_review["label"] == "Code-Review"
        assert shape(code_review) == shape(ref_row["submitRecords"][0]["labels"][1])
    assert row["number"] == "2" and row["open"] is True and row["status"] == "NEW"
    assert row["dependsOn"][0]["number"] == "1"
    assert row["currentPatchSet"]["approvals"][0]["value"] == "2"
    assert row["submitRecords"][0]["status"] == "NOT_READY"
    assert stats == {
        "type": "stats",
        "rowCount": 1,
        "runTimeMilliseconds": stats["runTimeMilliseconds"],
        "moreChanges": False,
    }

    status, out, _ = alice.run(f"gerrit query --format JSON --dependencies {change1}")
    row, _ = (json.loads(line) for line in out.splitlines())
    assert row["number"] == "1" and row["neededBy"][0]["number"] == "2"

    status, out, _ = alice.run(f"gerrit query --format JSON status:open project:{PROJECT}")
    assert [json.loads(line).get("number") for line in out.splitlines()] == ["2", "1", None]

    status, out, _ = alice.run("gerrit query --format JSON frobnicate:yes")
    assert status == 1 and json.loads(out)["type"] == "error"


def test_stream_events_delivers_in_order_and_stop_closes_it(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, change1: str
) -> None:
    client = ci.client()
    channel = client.get_transport().open_session()  # type: ignore[union-attr]
    channel.exec_command("gerrit stream-events")
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        for line in channel.makefile("r"):
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    listened: list[str] = []
    gerrit_sim.add_listener(lambda e: listened.append(e["type"]))

    review(alice, "1,1", "--code-review", "2", "-m", "first")
    review(alice, "1,1", "-m", "second")
    received = [json.loads(lines.get(timeout=10)) for _ in range(2)]
    assert [e["comment"].rsplit("\n", 1)[-1] for e in received] == ["first", "second"]
    assert received == gerrit_sim.events()[-2:]
    wait_for(lambda: listened == ["comment-added", "comment-added"])

    gerrit_sim.stop()
    assert lines.get(timeout=10) == ""
    assert channel.recv_exit_status() == 0
    client.close()
