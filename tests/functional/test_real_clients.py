"""Real Gerrit clients from PyPI against the simulator: gerritlib (the
library Zuul and OpenStack's infra tools used), pygerrit's event classes,
and git-review (the command-line tool people push with). Nobody here wrote
them, so they hold the simulator to what Gerrit clients expect.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from tests.fixtures.gerrit_sim import SimUser
from tests.unit.test_gerrit_sim import PROJECT, clone, commit, new_change_id, push

gerritlib = pytest.importorskip("gerritlib.gerrit")
pygerrit_events = pytest.importorskip("pygerrit.events")

pytestmark = [
    pytest.mark.timeout(120),
    # gerritlib accepts unknown host keys with paramiko's WarningPolicy.
    pytest.mark.filterwarnings("ignore:Unknown .* host key"),
]


@pytest.fixture
def alice(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("alice")


@pytest.fixture
def ci(sim_user: Callable[..., SimUser]) -> SimUser:
    return sim_user("ci")


def lib_client(sim: GerritSimulator, user: SimUser) -> Any:
    return gerritlib.Gerrit(
        sim.host, user.username, port=sim.port, keyfile=str(user.key), connection_attempts=1
    )


def test_gerritlib_watch_query_review_abandon_restore_submit(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, tmp_path: Path
) -> None:
    watcher = lib_client(gerrit_sim, ci)
    # Retries forever, slowly: after the simulator stops at teardown its
    # daemon thread waits instead of dying with an exception.
    watcher.startWatching(connection_attempts=-1, retry_delay=60)
    deadline = 5
    from tests.unit.test_gerrit_sim import wait_for

    wait_for(lambda: gerrit_sim.stream_count() == 1)
    work = clone(alice, gerrit_sim, tmp_path / "work")
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nChange-Id: {new_change_id()}\n")
    push(alice, work)

    lib = lib_client(gerrit_sim, alice)
    row = lib.query("change:1")
    assert row["number"] in (1, "1") and row["project"] == PROJECT

    lib.review(PROJECT, "1,1", "Looks good", {"code-review": 2, "label": "Workflow=1"})
    assert gerrit_sim.get_change(1).votes == {"Code-Review": {"alice": 2}, "Workflow": {"alice": 1}}
    lib.review(PROJECT, "1,1", "", {"abandon": True})
    assert gerrit_sim.get_change(1).status == "ABANDONED"
    lib.review(PROJECT, "1,1", "", {"restore": True})
    assert gerrit_sim.get_change(1).status == "NEW"
    ci_lib = lib_client(gerrit_sim, ci)
    ci_lib.review(PROJECT, "1,1", "", {"verified": 2, "submit": True})
    assert gerrit_sim.get_change(1).status == "MERGED"

    expected = [
        "patchset-created",
        "comment-added",
        "change-abandoned",
        "change-restored",
        "comment-added",
        "change-merged",
        "ref-updated",
    ]
    # gerritlib reads one line per poll() wake-up: lines that arrive in one
    # packet (change-merged and ref-updated do) wait for the next data. A
    # comment per missing event is that next data.
    seen: list[str] = []
    for _ in range(20):
        while not watcher.event_queue.empty():
            seen.append(watcher.event_queue.get()["type"])
        if len(seen) >= len(expected):
            break
        try:
            seen.append(watcher.event_queue.get(timeout=deadline)["type"])
        except queue.Empty:
            assert alice.run("gerrit review -m nudge 1,1")[0] == 0
    assert seen[: len(expected)] == expected


def test_pygerrit_recognises_every_event_it_defines(
    gerrit_sim: GerritSimulator, alice: SimUser, ci: SimUser, tmp_path: Path
) -> None:
    work = clone(alice, gerrit_sim, tmp_path / "work")
    commit(alice, work, "a.txt", "a\n", f"Add a\n\nChange-Id: {new_change_id()}\n")
    push(alice, work)
    run = alice.run
    assert run("gerrit review --code-review 2 --workflow 1 -m hi 1,1")[0] == 0
    assert run("gerrit review --abandon 1,1")[0] == 0
    assert run("gerrit review --restore 1,1")[0] == 0
    assert ci.run("gerrit review --verified 2 --submit 1,1")[0] == 0
    defined = set(pygerrit_events.GerritEventFactory._events)
    seen = set()
    for event in gerrit_sim.events():
        if event["type"] not in defined:
            continue  # 3.x types pygerrit (2016) predates
        parsed = pygerrit_events.GerritEventFactory.create(json.loads(json.dumps(event)))
        assert type(parsed).__name__ != "UnhandledEvent"
        assert parsed.change.number if hasattr(parsed, "change") else parsed.ref_update.project
        seen.add(event["type"])
    assert seen == {
        "patchset-created",
        "comment-added",
        "change-abandoned",
        "change-restored",
        "change-merged",
        "ref-updated",
    }


def git_review_home(tmp_path: Path, sim: GerritSimulator, user: SimUser) -> dict[str, str]:
    """A HOME, and ssh/scp on PATH reading an ssh config that sends git's and
    git-review's own ssh calls (query, scp) to the simulator with the user's
    key, the host key checked (OpenSSH reads ~/.ssh from the password
    database, not $HOME, hence the wrappers)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    config = home / ".ssh" / "config"
    for tool in ("ssh", "scp"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/{tool} -F {config} "$@"\n')
        wrapper.chmod(0o755)
    config.write_text(
        f"Host {sim.host}\n  Port {sim.port}\n  User {user.username}\n"
        f"  IdentityFile {user.key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {user.known_hosts}\n  StrictHostKeyChecking yes\n"
    )
    (home / ".gitconfig").write_text(
        f"[user]\n  name = {user.username}\n  email = {user.username}@example.org\n"
        # git-review names the account in the remote it adds (else the login name).
        f"[gitreview]\n  username = {user.username}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["HOME"] = str(home)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def git_review(env: dict[str, str], work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(__file__).parents[2] / ".venv" / "bin" / "git-review"
    return subprocess.run(
        [str(binary), *args], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )


def test_git_review_push_amend_and_download(
    gerrit_sim: GerritSimulator, alice: SimUser, tmp_path: Path
) -> None:
    env = git_review_home(tmp_path, gerrit_sim, alice)
    work = tmp_path / "work"
    url = f"ssh://{gerrit_sim.host}:{gerrit_sim.port}/{PROJECT}"
    subprocess.run(["git", "clone", "-q", url, str(work)], env=env, check=True)
    (work / ".gitreview").write_text(
        f"[gerrit]\nhost={gerrit_sim.host}\nport={gerrit_sim.port}\nproject={PROJECT}\n"
    )
    hook = work / ".git" / "hooks" / "commit-msg"
    # The hook git review -s would download (scp of hooks/commit-msg is
    # another part of issue 15): a Change-Id in every message instead.
    change_id = new_change_id()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)

    git("remote", "add", "gerrit", url)
    (work / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", f"Add a\n\nChange-Id: {change_id}")
    done = git_review(env, work, "-y", "master")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(gerrit_sim.get_change(1).patchsets) == 1
    (work / "a.txt").write_text("a2\n")
    git("commit", "-q", "-a", "--amend", "--no-edit")
    done = git_review(env, work, "-y", "master")
    assert done.returncode == 0, done.stdout + done.stderr
    second = gerrit_sim.get_change(1).patchsets[1].revision

    elsewhere = tmp_path / "elsewhere"
    subprocess.run(["git", "clone", "-q", url, str(elsewhere)], env=env, check=True)
    (elsewhere / ".gitreview").write_text((work / ".gitreview").read_text())
    subprocess.run(["git", "remote", "add", "gerrit", url], cwd=elsewhere, env=env, check=True)
    for target, revision in (
        ("1", second),
        ("1,1", gerrit_sim.get_change(1).patchsets[0].revision),
    ):
        done = git_review(env, elsewhere, "-d", target)
        assert done.returncode == 0, done.stdout + done.stderr
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=elsewhere, env=env, capture_output=True, text=True
        ).stdout.strip()
        assert head == revision
    assert not hook.exists() or hook.is_file()


def test_git_review_setup_installs_the_commit_msg_hook(
    gerrit_sim: GerritSimulator, alice: SimUser, tmp_path: Path
) -> None:
    # scp of hooks/commit-msg is another engineer's part of issue 15 (branch
    # sim3x, module gerrit_sim.hook): until it is merged this test skips.
    pytest.importorskip("gatekeeper.sandbox.gerrit_sim.hook")
    env = git_review_home(tmp_path, gerrit_sim, alice)
    work = tmp_path / "work"
    url = f"ssh://{gerrit_sim.host}:{gerrit_sim.port}/{PROJECT}"
    subprocess.run(["git", "clone", "-q", url, str(work)], env=env, check=True)
    (work / ".gitreview").write_text(
        f"[gerrit]\nhost={gerrit_sim.host}\nport={gerrit_sim.port}\nproject={PROJECT}\n"
    )
    done = git_review(env, work, "-s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / ".git" / "hooks" / "commit-msg").is_file()
    (work / "b.txt").write_text("b\n")
    subprocess.run(["git", "add", "b.txt"], cwd=work, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "Add b"], cwd=work, env=env, check=True)
    done = git_review(env, work, "-y", "master")
    assert done.returncode == 0, done.stdout + done.stderr
    assert gerrit_sim.get_change(1).change_id.startswith("I")
