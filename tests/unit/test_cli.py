"""The gatekeeper command: help, validate, and refusing to run unconfigured."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import main

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["run", "scheduler", "worker", "pool", "validate", "sandbox"]


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert f"Usage: main {command}" in result.output or "Usage:" in result.output
    # A sentence of explanation, not just the option list.
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary.split()) >= 5


def test_validate_accepts_the_repository_layout() -> None:
    result = CliRunner().invoke(main, ["validate", str(REPO / "layout.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_validate_names_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "layout.yaml"
    bad.write_text(
        "pipelines:\n"
        "  - name: check\n"
        "    manager: IndependentPipelineManager\n"
        "    trigerr:\n"
        "      gerrit:\n"
        "        - event: patchset-created\n"
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: pipelines[0].trigerr: unknown key 'trigerr'" in result.output
    assert "did you mean 'trigger'" in result.output


def test_validate_reports_a_broken_regex(tmp_path: Path) -> None:
    bad = tmp_path / "layout.yaml"
    bad.write_text(
        "pipelines:\n"
        "  - name: check\n"
        "    manager: independent\n"
        "    trigger:\n"
        "      gerrit:\n"
        "        - event: comment-added\n"
        "          comment: (?i)^recheck(\n"
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:7: pipelines[0].trigger.gerrit[0].comment" in result.output


def test_run_without_gerrit_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "layout.yaml").write_text((REPO / "layout.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code != 0
    assert "no Gerrit configured" in result.output


def test_validate_refuses_what_the_runtime_would_mishandle(tmp_path: Path) -> None:
    """Attack 6: a log glob out of the node was silently not collected (the
    build still SUCCESS) and a project named ``../../evil project`` passed."""
    bad = tmp_path / "layout.yaml"
    bad.write_text(
        "jobs:\n"
        "  - name: gate-evil\n"
        "    logs: ['../logs/**']\n"
        "projects:\n"
        "  - name: ../../evil project\n"
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3: jobs[0].logs[0]: log glob '../logs/**' has a '..' component" in result.output
    assert f"{bad}:5: projects[0].name: project name '../../evil project'" in result.output
