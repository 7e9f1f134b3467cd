"""The simulator's two dialects (3.x, 2.13) held to contracts written from
Gerrit's own documentation, not from the simulator.

tests/contracts/gerrit-3.11.json and gerrit-2.13.json are JSON Schemas of
every event type and query row, written from each version's json.txt and
cmd-stream-events.txt. The simulator is driven through every action that
causes an event (real git pushes over OpenSSH, gerrit commands over SSH,
and the harness methods for what Gerrit does only over REST), and every
event it emitted and every query row it printed must validate. gatekeeper's
own parser must read each event too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gatekeeper.config.site import GerritConfig
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.events import parse_event
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from gatekeeper.sandbox.gerrit_sim.git import SIM_IDENT, ZERO, Repo
from tests.fixtures.gerrit_sim import SimUser
from tests.unit.test_gerrit_sim import PROJECT, clone, commit, new_change_id, push, review

CONTRACTS = Path(__file__).parents[1] / "contracts"
DIALECTS = {"3.11.1": "gerrit-3.11.json", "2.13": "gerrit-2.13.json"}
NEW_IN_3 = {
    "batch-ref-updated",
    "project-head-updated",
    "wip-state-changed",
    "private-state-changed",
    "vote-deleted",
    "change-deleted",
}


def validator(version: str, definition: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACTS / DIALECTS[version]).read_text())
    return jsonschema.Draft202012Validator(schema | {"$ref": f"#/$defs/{definition}"})


def assert_valid(version: str, definition: str, value: dict[str, Any]) -> None:
    errors = sorted(validator(version, definition).iter_errors(value), key=str)
    assert not errors, f"{definition}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )


@pytest.fixture
def bob(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("bob")


@pytest.fixture
def ci(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("ci", groups=frozenset({"Non-Interactive Users"}))


def gerrit(user: SimUser, *argv: str) -> tuple[int, str, str]:
    return user.run(" ".join(argv))


def amend(user: SimUser, work: Path, message: str | None = None) -> None:
    args = ["-C", str(work), "commit", "-q", "--amend", "--allow-empty"]
    # A new committer date, so an unchanged commit still gets a new sha.
    env_date = ["-c", "user.useConfigOnly=false"]
    if message is None:
        args.append("--no-edit")
    else:
        args += ["-m", message]
    user.git(*env_date, *args, "--date=2030-01-01T00:00:00")


def kinds(sim: GerritSimulator, number: int) -> list[str]:
    return [
        e["patchSet"]["kind"]
        for e in sim.events()
        if e["type"] == "patchset-created" and int(e["change"]["number"]) == number
    ]


@pytest.mark.parametrize("gerrit_version", list(DIALECTS))
def test_every_event_and_query_row_meets_the_documented_contract(
    gerrit_sim: GerritSimulator,
    gerrit_version: str,
    sim_user: Callable[..., SimUser],
    bob: SimUser,
    ci: SimUser,
    tmp_path: Path,
) -> None:
    alice = sim_user("alice")
    work = clone(alice, gerrit_sim, tmp_path / "alice")
    change_id = new_change_id()
    message = f"Add a\n\nBody.\n\nChange-Id: {change_id}\n"
    commit(alice, work, "a.txt", "a\n", message)
    push(alice, work)  # change 1, patch set 1
    amend(alice, work, f"Add a\n\nA better body.\n\nChange-Id: {change_id}\n")
    push(alice, work)  # 2: message only
    alice.git("-C", str(work), "commit", "-q", "--amend", "--no-edit", "--date=2031-01-01")
    push(alice, work)  # 3: nothing but the dates
    commit_all = ["-C", str(work), "commit", "-q", "--amend", "--no-edit"]
    (work / "a.txt").write_text("a\nmore\n")
    alice.git("-C", str(work), "add", "a.txt")
    alice.git(*commit_all)
    push(alice, work)  # 4: new code

    # Bob's change 2 merges, so master moves under alice's change.
    other = clone(bob, gerrit_sim, tmp_path / "bob")
    commit(bob, other, "b.txt", "b\n", f"Add b\n\nChange-Id: {new_change_id()}\n")
    push(bob, other)
    assert review(bob, "2,1", "--code-review", "2", "--label", "Workflow=+1")[0] == 0
    assert review(ci, "2,1", "--verified", "2", "--submit")[0] == 0
    alice.git("-C", str(work), "pull", "-q", "--rebase", "origin", "master")
    push(alice, work)  # 5: a trivial rebase
    alice.git("-C", str(work), "commit", "-q", "--amend", "-m", f"Add a\n\nChange-Id: {change_id}")
    push(alice, work)  # 6: same parent, another message: no code change
    assert kinds(gerrit_sim, 1) == [
        "REWORK",
        "NO_CODE_CHANGE",
        "NO_CHANGE",
        "REWORK",
        "TRIVIAL_REBASE",
        "NO_CODE_CHANGE",
    ]

    # Everything else that causes an event.
    assert gerrit(alice, "gerrit", "set-reviewers", "-a", "bob", "-a", "ci", "1") == (0, "", "")
    assert review(bob, "1,6", "--code-review", "1")[0] == 0
    assert gerrit(alice, "gerrit", "set-reviewers", "--remove", "bob", "1")[0] == 0
    assert review(ci, "1,6", "--verified", "1")[0] == 0
    gerrit_sim.set_topic(1, "dialects", "alice")
    gerrit_sim.set_hashtags(1, "alice", add=["one", "two"])
    gerrit_sim.set_hashtags(1, "alice", remove=["one"])
    gerrit_sim.set_wip(1, True, "alice")
    gerrit_sim.set_private(1, True, "alice")
    gerrit_sim.delete_vote(1, "verified", "ci", "alice")
    assert review(alice, "1,6", "--abandon", "--message", "later")[0] == 0
    assert review(alice, "1,6", "--restore")[0] == 0
    assert gerrit(alice, "gerrit", "create-project", "demo/new")[0] == 0
    # A second branch to point HEAD at (no SSH command creates branches).
    head = gerrit_sim.branch_head("demo/new")
    gerrit_sim.state.project("demo/new").repo.update_refs([("refs/heads/stable", head, ZERO)])
    created = gerrit(alice, "gerrit", "set-head", "demo/new", "--new-head", "stable")
    assert created[0] == (0 if gerrit_sim.dialect == "3" else 1)

    # Query rows, with every option, while change 3 still exists.
    commit(bob, other, "c.txt", "c\n", f"Add c\n\nChange-Id: {new_change_id()}\n")
    push(bob, other)  # change 3, on top of change 2's merge
    commit(bob, other, "d.txt", "d\n", f"Add d\n\nChange-Id: {new_change_id()}\n")
    push(bob, other)  # change 4, needs change 3
    options = [
        "--current-patch-set",
        "--patch-sets",
        "--all-approvals",
        "--dependencies",
        "--submit-records",
        "--commit-message",
        "--comments",
        "--files",
    ]
    status, out, err = gerrit(ci, "gerrit", "query", "--format", "JSON", *options, "status:open")
    assert (status, err) == (0, "")
    *rows, stats = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3 and stats["rowCount"] == 3
    for row in rows:
        assert_valid(gerrit_version, "queryRow", row)
    assert_valid(gerrit_version, "queryStats", stats)
    depends = next(r for r in rows if r.get("dependsOn"))
    assert depends["dependsOn"][0]["number"] == (3 if gerrit_sim.dialect == "3" else "3")
    status, out, _ = gerrit(ci, "gerrit", "query", "--format", "JSON", "nonsense:term")
    assert status == (0 if gerrit_sim.dialect == "3" else 1)
    assert_valid(gerrit_version, "queryError", json.loads(out))
    gerrit_sim.delete_change(4, "bob")

    emitted = gerrit_sim.events()
    seen = {e["type"] for e in emitted}
    documented = set(validator(gerrit_version, "events").schema["$defs"]["events"])
    assert seen <= documented, seen - documented
    expected = documented - {"project-head-updated"} if gerrit_sim.dialect != "3" else documented
    assert seen == expected, expected - seen
    for event in emitted:
        assert_valid(gerrit_version, f"events/{event['type']}", event)
        parsed = parse_event(json.dumps(event))
        assert parsed is not None and parsed.type == event["type"]
        if "change" in event:
            assert parsed.change == int(event["change"]["number"])
            assert parsed.project == PROJECT
        if event["type"] in ("ref-updated", "batch-ref-updated"):
            assert (parsed.project, parsed.branch) == (PROJECT, "master")
    if gerrit_sim.dialect == "2.13":
        assert not seen & NEW_IN_3


@pytest.mark.parametrize("gerrit_version", list(DIALECTS))
def test_rebase_with_a_new_message_is_its_own_kind_only_in_3x(
    gerrit_sim: GerritSimulator,
    gerrit_version: str,
    sim_user: Callable[..., SimUser],
    tmp_path: Path,
) -> None:
    alice = sim_user("alice")
    work = clone(alice, gerrit_sim, tmp_path / "alice")
    change_id = new_change_id()
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nChange-Id: {change_id}\n")
    push(alice, work)
    # Master moves by a change of another file, fetched straight into the
    # bare repository (its pre-receive hook refuses direct pushes).
    repo = gerrit_sim.state.project(PROJECT).repo
    base = gerrit_sim.branch_head(PROJECT)
    side = tmp_path / "side"
    alice.git("clone", "-q", str(repo.path), str(side))
    commit(alice, side, "z.txt", "z\n", "Upstream work")
    moved = alice.git("-C", str(side), "rev-parse", "HEAD").strip()
    repo.git("fetch", "-q", str(side), "HEAD")
    repo.update_refs([("refs/heads/master", moved, base)])
    alice.git("-C", str(work), "pull", "-q", "--rebase", "origin", "master")
    message = f"Add a\n\nNow explained.\n\nChange-Id: {change_id}\n"
    alice.git("-C", str(work), "commit", "-q", "--amend", "-m", message)
    push(alice, work)
    expected = "TRIVIAL_REBASE_WITH_MESSAGE_UPDATE" if gerrit_sim.dialect == "3" else "REWORK"
    assert kinds(gerrit_sim, 1) == ["REWORK", expected]


@pytest.mark.parametrize("gerrit_version", list(DIALECTS))
def test_banner_names_gerrit_and_scp_serves_the_commit_msg_hook(
    gerrit_sim: GerritSimulator,
    gerrit_version: str,
    sim_user: Callable[..., SimUser],
    tmp_path: Path,
) -> None:
    alice = sim_user("alice")
    site = GerritConfig(
        host=gerrit_sim.host,
        port=gerrit_sim.port,
        user="alice",
        key=alice.key,
        known_hosts=alice.known_hosts,
    )
    connection = GerritConnection(site)
    try:
        wanted = tuple(int(p) for p in gerrit_version.split("."))
        assert connection.banner_version() == wanted
        assert connection.version() == wanted
        # A bad query: an error row (3.x: exit 0; 2.13: exit 1) is an error
        # that says what Gerrit said, in both dialects.
        with pytest.raises(GerritError, match="Unsupported query"):
            connection.query("nonsense:term")
    finally:
        connection.close()
    # OpenSSH's scp in its classic mode (-O), as git-review runs it.
    hook = tmp_path / "commit-msg"
    ssh_options = ["-i", str(alice.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    ssh_options += ["-o", f"UserKnownHostsFile={alice.known_hosts}"]
    source = f"alice@{gerrit_sim.host}:hooks/commit-msg"
    subprocess.run(
        ["scp", "-O", "-p", "-P", str(gerrit_sim.port), *ssh_options, source, str(hook)],
        check=True,
        capture_output=True,
    )
    assert hook.stat().st_mode & 0o111
    # The hook gives a commit without a Change-Id one that Gerrit accepts.
    work = clone(alice, gerrit_sim, tmp_path / "work")
    target = work / ".git" / "hooks" / "commit-msg"
    target.write_bytes(hook.read_bytes())
    target.chmod(0o755)
    commit(alice, work, "h.txt", "h\n", "No id yet\n\nSigned-off-by: Alice <a@example.org>")
    body = alice.git("-C", str(work), "log", "-1", "--format=%B").strip()
    assert body.splitlines()[-1].startswith("Change-Id: I")
    assert body.splitlines()[-2].startswith("Signed-off-by:")
    push(alice, work)
    assert gerrit_sim.get_change(1).subject == "No id yet"
    missing = subprocess.run(
        ["scp", "-O", "-P", str(gerrit_sim.port), *ssh_options, f"{source}x", str(hook)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "No such file" in missing.stderr


def test_merge_kinds_from_git(tmp_path: Path) -> None:
    """Merge commits: only the first parent moved (cleanly) is
    MERGE_FIRST_PARENT_UPDATE; another second parent is a REWORK."""
    repo = Repo(tmp_path / "p.git")
    repo.init({"README": "r\n"}, "master")
    base = repo.rev("refs/heads/master")
    assert base is not None

    def make(parents: list[str], files: dict[str, str], message: str = "m") -> str:
        entries = [f"100644 blob {repo.git('rev-parse', f'{base}:README').strip()}\tREADME"]
        for name, text in files.items():
            blob = repo.git("hash-object", "-w", "--stdin", stdin=text.encode()).strip()
            entries.append(f"100644 blob {blob}\t{name}")
        tree = repo._mktree(entries)
        args = [a for p in parents for a in ("-p", p)]
        return repo.git("commit-tree", tree, *args, "-m", message, env=SIM_IDENT).strip()

    feature = make([base], {"f.txt": "f\n"})
    main1 = make([base], {"m1.txt": "1\n"})
    main2 = make([main1], {"m1.txt": "1\n", "m2.txt": "2\n"})
    other = make([base], {"o.txt": "o\n"})
    merge1 = make([main1, feature], {"m1.txt": "1\n", "f.txt": "f\n"}, "Merge")
    merge2 = make([main2, feature], {"m1.txt": "1\n", "m2.txt": "2\n", "f.txt": "f\n"}, "Merge")
    merge3 = make([main2, other], {"m1.txt": "1\n", "m2.txt": "2\n", "o.txt": "o\n"}, "Merge")
    info = repo.commit_info
    assert repo.patchset_kind(info(merge1), info(merge2)) == "MERGE_FIRST_PARENT_UPDATE"
    assert repo.patchset_kind(info(merge2), info(merge3)) == "REWORK"
    # A rebase whose pick conflicts with the new parent is a rework.
    clash = make([base], {"m1.txt": "mine\n"})
    rebased = make([main1], {"m1.txt": "mine\n"})
    assert repo.patchset_kind(info(clash), info(rebased)) == "REWORK"
