"""`gatekeeper run -c gatekeeper.yaml` as a user starts it: a process against Gerrit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from tests.fixtures.gearmand import free_port
from tests.fixtures.gerrit_sim import SimUser

pytestmark = pytest.mark.timeout(120)

LAYOUT = """
pipelines:
  - name: check
    manager: IndependentPipelineManager
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
jobs:
  - name: demo-unit
    node: small
    run: cd demo/project && ./run.sh
projects:
  - name: demo/project
    check:
      - demo-unit
"""


LINT_JOB = """  - name: demo-lint
    node: small
    run: test -f demo/project/README
"""


def reconfigure(site_dir: Path) -> subprocess.CompletedProcess[str]:
    return command(site_dir, "reconfigure")


def command(site_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gatekeeper ARGS`` run in the site's directory (it finds ./gatekeeper.yaml)."""
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", *args],
        cwd=site_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.05)


def test_gatekeeper_run_votes_on_a_pushed_change(
    gerrit_sim: GerritSimulator, sim_user: Callable[..., SimUser], tmp_path: Path
) -> None:
    ci = sim_user("gatekeeper", groups=frozenset({"Non-Interactive Users"}))
    alice = sim_user("alice")
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "layout.yaml").write_text(LAYOUT)
    (site_dir / "gatekeeper.yaml").write_text(
        f"gerrit:\n  host: 127.0.0.1\n  port: {gerrit_sim.port}\n  user: gatekeeper\n"
        f"  key: {ci.key}\n  known_hosts: {ci.known_hosts}\n"
        f"gearman:\n  listen:\n    port: {free_port()}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", "run"],  # finds ./gatekeeper.yaml
        cwd=site_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(
            lambda: any("stream-events: connected" in line for line in output),
            60,
            "the listener to connect",
        )
        work = tmp_path / "work"
        alice.git("clone", "-q", gerrit_sim.git_url("demo/project", "alice"), str(work))
        (work / "README").write_text("changed\n")
        alice.git(
            "-C",
            str(work),
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=a@example.org",
            "commit",
            "-qam",
            "Change the README\n\nChange-Id: I" + "2" * 40,
        )
        alice.git("-C", str(work), "push", "-q", "origin", "HEAD:refs/for/master")
        wait_for(
            lambda: gerrit_sim.get_change(1).votes.get("Verified") == {"gatekeeper": 1},
            60,
            "Verified +1",
        )
        assert (site_dir / "state" / "gatekeeper.db").exists()
        archive = site_dir / "state" / "logs" / "1" / "1" / "1" / "check" / "demo-unit"
        [build] = list(archive.iterdir())
        assert "ok" in (build / "console.txt").read_text().splitlines()
        assert (site_dir / "state" / "gatekeeper.pid").read_text().strip() == str(proc.pid)

        # A broken layout is refused before any daemon hears of it.
        (site_dir / "layout.yaml").write_text(LAYOUT.replace("patchset-created", "(unclosed"))
        refused = reconfigure(site_dir)
        assert refused.returncode == 1
        assert "layout.yaml:7: pipelines[0].trigger.gerrit[0].event" in refused.stderr
        # A good one reaches the running daemon: the next change runs the new job too.
        (site_dir / "layout.yaml").write_text(
            LAYOUT.replace("projects:", LINT_JOB + "projects:") + "      - demo-lint\n"
        )
        done = reconfigure(site_dir)
        assert done.returncode == 0, done.stderr
        assert f"gatekeeper (pid {proc.pid})" in done.stdout
        wait_for(lambda: any("reconfigured from" in line for line in output), 30, "the reload")
        (work / "README").write_text("changed again\n")
        alice.git(
            "-C",
            str(work),
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=a@example.org",
            "commit",
            "-qam",
            "Change it again\n\nChange-Id: I" + "3" * 40,
        )
        alice.git("-C", str(work), "push", "-q", "origin", "HEAD:refs/for/master")
        wait_for(
            lambda: gerrit_sim.get_change(2).votes.get("Verified") == {"gatekeeper": 1},
            60,
            "Verified +1 on the second change",
        )
        [report] = [m.text for m in gerrit_sim.get_change(2).messages if m.author == "gatekeeper"]
        assert "- demo-lint " in report and "- demo-unit " in report

        # Operators reach the running scheduler through Gearman.
        shown = command(site_dir, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        assert [p["name"] for p in json.loads(shown.stdout)["pipelines"]] == ["check"]
        refused = command(
            site_dir,
            "dequeue",
            "--pipeline",
            "check",
            "--project",
            "demo/project",
            "--change",
            "2,1",
        )
        assert refused.returncode == 1
        assert "demo/project 2,1 is not in check" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert status == 0, "".join(output[-40:])
