"""Running git: one set of options and one identity, never a prompt."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from gatekeeper.errors import WorkspaceError

# Merges need an identity; a fresh worker host has none configured.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "gatekeeper",
    "GIT_AUTHOR_EMAIL": "gatekeeper@localhost",
    "GIT_COMMITTER_NAME": "gatekeeper",
    "GIT_COMMITTER_EMAIL": "gatekeeper@localhost",
    # Never wait on a password prompt in a worker thread.
    "GIT_TERMINAL_PROMPT": "0",
}
# Options that make merges behave the same whatever the host's git config says.
_GIT_OPTIONS = [
    "-c",
    "commit.gpgsign=false",
    "-c",
    "merge.ff=true",
    "-c",
    "core.hooksPath=/dev/null",
    # Keep what a fetch brings as one pack, not a file (and a directory) per
    # object: the workspace is copied to the node file by file.
    "-c",
    "fetch.unpackLimit=1",
    # A gc that git detaches would delete packs under a running clone or
    # rsync; mirrors are collected in the foreground, under their lock, and
    # workspaces (which live for one build) never.
    "-c",
    "gc.autoDetach=false",
    "-c",
    "maintenance.autoDetach=false",
]
GIT_TIMEOUT = 600.0


def gerrit_git_env(key: Path, known_hosts: Path, port: int) -> dict[str, str]:
    """The environment that makes git talk to Gerrit with our key, strictly."""
    # git runs GIT_SSH_COMMAND through a shell, so the paths must be quoted.
    command = [
        "ssh",
        "-i",
        shlex.quote(str(key)),
        "-p",
        str(int(port)),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        shlex.quote(f"UserKnownHostsFile={known_hosts}"),
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    return {"GIT_SSH_COMMAND": " ".join(command)}


class Git:
    """Runs git with gatekeeper's options and identity, never prompting.

    Shared by the worker's workspaces and the gate's merger; each thread that
    calls :meth:`run` gets its own process, so one instance may serve many.
    """

    def __init__(self, git_env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(git_env or {}), **_IDENTITY}

    def run(
        self,
        args: list[str],
        cwd: Path | None = None,
        auto_gc: bool = False,
        stdin: str | None = None,
    ) -> str:
        """Run git; return its stdout. ``auto_gc`` lets git collect garbage as it
        sees fit; ``stdin`` is written to its standard input.

        :raises WorkspaceError: git failed, was missing, or ran too long.
        """
        argv = ["git", *_GIT_OPTIONS, *([] if auto_gc else ["-c", "gc.auto=0"]), *args]
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=self.env,
                input=stdin,
                # Without input, git must still never read this process's stdin.
                stdin=subprocess.DEVNULL if stdin is None else None,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkspaceError(f"git {args[0]} failed: {exc}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise WorkspaceError(f"git {' '.join(args)} failed: {' / '.join(detail)}")
        return proc.stdout
