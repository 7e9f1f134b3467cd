"""Issue 13, attack 2: a pushed change steals the CI account through its job.

Through the real daemon against the Gerrit simulator (the sandbox harness),
on the default ``local`` provider, with real bubblewrap. The change adds a
pre-test hook, which the default job's kit runs, that prints the Gerrit
private key, the TLS keys and the database, and hard-links the key into its
logs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.protocol import JobSpec
from gatekeeper.model.build import BuildResult
from gatekeeper.model.results import StartData
from gatekeeper.pool.providers.local import LocalProvider
from gatekeeper.sandbox.harness import Sandbox, needs_unconfined
from gatekeeper.worker.executor import BuildExecutor
from gatekeeper.worker.workspace import WorkspaceBuilder
from tests.functional.test_worker import make_upstream

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
JOB_LINE = re.compile(r"^- gate-devstack-vm (\S+) : (SUCCESS|FAILURE)", re.M)

# What an attacker would push: the paths are where a site keeps them (an
# attacker guesses them; the test knows them).
ATTACK = """#!/usr/bin/env bash
mkdir -p logs
echo "attack: running as $(id -u)"
for f in {secrets}; do
    cat "$f"
    cat "$f" >> logs/stolen.txt
    ln "$f" "logs/linked-$(basename "$f")"
done
echo "attack: done"
exit 0
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox", REPO / "layout.yaml")
    try:
        box.start()
        yield box
    finally:
        box.stop()


def _key_lines(path: Path) -> list[bytes]:
    """The lines that only this key has (its PEM body)."""
    lines = path.read_bytes().splitlines()
    return [line for line in lines if len(line) >= 40 and not line.startswith(b"-----")]


def test_pushed_change_cannot_read_or_link_the_ci_keys(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None and sandbox.site.gerrit is not None
    state = sandbox.site.state_dir
    keys = [sandbox.site.gerrit.key, *sorted((state / "tls").glob("*.key"))]
    database = state / "gatekeeper.db"
    admin_secret = state / "admin.secret"
    assert database.exists()
    secrets = " ".join(f"'{p}'" for p in [*keys, database, admin_secret])
    number, _ps = sandbox.push_change(
        "openstack-infra/devstack-gate",
        "Speed up the wrapper",
        {"contrib/ci/pre_test_hook.sh": ATTACK.format(secrets=secrets)},
    )
    sandbox.wait_until_settled()

    change = sandbox.sim.get_change(number)
    messages = [m.text for m in change.messages if m.author == "gatekeeper"]
    # The build still reports.
    assert "gatekeeper" in change.votes.get("Verified", {})
    match = JOB_LINE.search(messages[-1])
    assert match is not None, messages
    root = sandbox.site.log_root
    assert root is not None
    logs = root / match.group(1)[len(sandbox.site.log_url) :]
    console = (logs / "console.txt").read_bytes()
    assert b"attack: done" in console  # the attack did run

    archived = {p: p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    marks = [b"SQLite format 3"] + [line for key in keys for line in _key_lines(key)]
    if admin_secret.exists():
        marks.append(admin_secret.read_bytes().strip())
    assert len(marks) > 1
    for mark in marks:
        for path, content in archived.items():
            assert mark not in content, f"{mark[:12]!r} archived in {path}"
        for text in messages:
            assert mark not in text.encode()
    assert not [p for p in archived if p.name.startswith("linked-")]


# -- where bubblewrap cannot run -------------------------------------------


def _run_build(tmp_path: Path, provider: LocalProvider, command: str) -> tuple[str, str, str]:
    """One build through the real executor on ``provider``; (result, error, console)."""
    make_upstream(tmp_path / "upstream")
    db = Database(f"sqlite:///{tmp_path / 'gatekeeper.db'}")
    db.migrate()
    try:
        nodes = NodeStore(db)
        nodes.add("node-1", "label", "local")
        nodes.set_ready("node-1", provider.launch("node-1", "label"))
        executor = BuildExecutor(
            nodes=nodes,
            providers={"local": provider},
            workspace=WorkspaceBuilder(tmp_path / "cache", {}),
            git_url=str(tmp_path / "upstream"),
            log_root=tmp_path / "logs",
            log_url_base="http://logs.example.org/",
            state_dir=tmp_path / "state",
            node_wait=10.0,
        )
        params = {
            "ZUUL_UUID": "0123456789ab",
            "ZUUL_PROJECT": "org/project",
            "ZUUL_BRANCH": "master",
            "LOG_PATH": "check/job/0123456",
        }
        spec = JobSpec(name="job", run=command, node="label", logs=["logs/**"])

        def started(_data: StartData) -> None:
            pass

        done = executor.run(params, spec, "w1", threading.Event(), started)
    finally:
        db.dispose()
    console = (tmp_path / "logs" / "check/job/0123456" / "console.txt").read_text()
    return done.result, done.error, console


def test_without_bubblewrap_the_local_provider_refuses_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The seam: the provider's ``bwrap`` key names a binary that is not there,
    which is how a host without bubblewrap looks to the provider."""
    config = ProviderConfig(
        name="local", driver="local", root=tmp_path / "nodes", bwrap=str(tmp_path / "no-bwrap")
    )
    with caplog.at_level(logging.ERROR):
        provider = LocalProvider(config)
    assert "bubblewrap not found" in provider.jail_problem
    assert "cannot confine jobs" in caplog.text
    result, error, console = _run_build(tmp_path, provider, "echo ran > ran.txt")
    assert result == BuildResult.ERROR
    assert "cannot confine jobs" in error and "unconfined: true" in error
    assert "cannot confine jobs" in console
    assert not list((tmp_path / "nodes").glob("*/workspace/ran.txt"))


def test_unconfined_true_runs_jobs_without_bubblewrap(tmp_path: Path) -> None:
    config = ProviderConfig(
        name="local",
        driver="local",
        root=tmp_path / "nodes",
        bwrap=str(tmp_path / "no-bwrap"),
        unconfined=True,
    )
    provider = LocalProvider(config)
    outside = tmp_path / "outside.txt"
    command = f"echo ran > '{outside}'; mkdir logs; ln '{outside}' logs/linked; echo ok > logs/ok"
    result, error, console = _run_build(tmp_path, provider, command)
    assert result == BuildResult.SUCCESS, (error, console)
    # Unconfined means what it says: the job wrote outside its node...
    assert outside.read_text() == "ran\n"
    # ...but the archive still takes nothing with a second name.
    archive = tmp_path / "logs" / "check/job/0123456" / "logs"
    assert sorted(p.name for p in archive.iterdir()) == ["index.html", "ok"]
    assert "WARNING: log file logs/linked: a hard link (2 names" in console


def test_the_sandbox_runs_unconfined_only_where_bubblewrap_cannot_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert needs_unconfined("/nonexistent/bwrap") is True
    assert "sandbox: jobs run UNCONFINED" in caplog.text
    assert needs_unconfined("bwrap") is False
