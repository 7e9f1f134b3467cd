"""The kit's clean-logs check and the gate hook's deadline, run by real bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gatekeeper.kit import DEVSTACK_GATE

pytestmark = pytest.mark.timeout(30)


def kit(tmp: Path, body: str) -> subprocess.CompletedProcess[str]:
    """``body`` run by bash with the kit's functions, BASE and DG_STATE in ``tmp``."""
    (tmp / "state").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "BASE": str(tmp / "opt" / "stack"),
        "WORKSPACE": str(tmp),
        "DG_STATE": str(tmp / "state"),
    }
    script = f"source {DEVSTACK_GATE / 'functions.sh'}\n{body}"
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
    )


def service_log(tmp: Path, name: str, text: str) -> None:
    logs = tmp / "opt" / "stack" / "new" / "screen-logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"screen-{name}.log").write_text(text)


def test_clean_logs_pass_without_error_lines(tmp_path: Path) -> None:
    service_log(tmp_path, "n-api", "2026-01-01 10:00:00.000 12 INFO n-api [-] started\n")
    done = kit(tmp_path, "dg_check_logs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean logs: no ERROR lines in 1 service logs" in done.stdout


def test_an_error_line_in_a_service_log_fails_the_check_and_is_shown(tmp_path: Path) -> None:
    service_log(tmp_path, "key", "2026-01-01 10:00:00.000 7 INFO key [-] started\n")
    service_log(tmp_path, "n-api", "2026-01-01 10:00:01.000 12 ERROR nova.api [-] No valid host\n")
    done = kit(tmp_path, "dg_check_logs")
    assert done.returncode == 1
    assert "ERROR lines in the service logs:" in done.stdout
    assert "screen-n-api.log:2026-01-01 10:00:01.000 12 ERROR nova.api [-] No valid host" in (
        done.stdout
    )
    assert "screen-key.log" not in done.stdout


def test_the_deadline_kills_the_hook_and_everything_it_started(tmp_path: Path) -> None:
    """The hook starts a child that would outlive it; at the deadline both
    go (SIGKILL to the group) and the time-out is marked. The child, orphaned
    by the kill, is reaped by init in its own time: until then it is a
    zombie, which ``kill -0`` still finds (CI saw it so), so a zombie counts
    as gone and the check waits a bounded while for the reaping."""
    done = kit(
        tmp_path,
        """
        hang() { sleep 300 & echo "child $!" > "$WORKSPACE/child"; wait; }
        dg_run_with_deadline 0.3 hang
        echo "status $?"
        [[ -e $DG_STATE/gate-timed-out ]] && echo "marked"
        read -r _ child < "$WORKSPACE/child"
        gone() {
            ! kill -0 "$child" 2>/dev/null ||
                [[ $(awk '{print $3}' "/proc/$child/stat" 2>/dev/null) == Z ]]
        }
        for _ in $(seq 50); do gone && break; sleep 0.1; done
        gone && echo "child gone" || echo "child alive"
        """,
    )
    assert done.stdout.split("\n")[-4:] == ["status 137", "marked", "child gone", ""]


def test_a_hook_within_its_time_keeps_its_status_and_leaves_no_mark(tmp_path: Path) -> None:
    done = kit(
        tmp_path,
        """
        quick() { echo ran; return 3; }
        dg_run_with_deadline 30 quick
        echo "status $?"
        [[ -e $DG_STATE/gate-timed-out ]] && echo "marked"
        """,
    )
    assert done.stdout.splitlines() == ["ran", "status 3"]
