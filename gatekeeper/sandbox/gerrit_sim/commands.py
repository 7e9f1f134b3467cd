"""The ``gerrit ...`` commands that answer once and exit.

``stream-events`` and the git commands keep their channel open and live in
:mod:`gatekeeper.sandbox.gerrit_sim.server`.
"""

from __future__ import annotations

import logging

from gatekeeper.sandbox.gerrit_sim import admin, query, review
from gatekeeper.sandbox.gerrit_sim.records import CommandResult
from gatekeeper.sandbox.gerrit_sim.state import SimState

log = logging.getLogger(__name__)


def run(
    state: SimState, username: str, command: str, argv: list[str], stdin: str = ""
) -> CommandResult:
    """Run one ``gerrit`` command line already split into ``argv``; ``stdin``
    is what the client sent (read only by ``gerrit review --json``)."""
    if len(argv) < 2 or argv[0] != "gerrit":
        name = argv[0] if argv else ""
        return CommandResult(1, "", f"fatal: {name}: not found\n")
    sub, rest = argv[1], argv[2:]
    if sub == "version":
        return CommandResult(0, f"gerrit version {state.version}\n", "")
    if sub == "query":
        return query.run(state, rest)
    if sub == "review":
        return review.run(state, username, command, rest, stdin)
    if sub == "set-reviewers":
        return admin.set_reviewers(state, username, rest)
    if sub == "create-project":
        return admin.create_project(state, username, rest)
    if sub == "set-head":
        return admin.set_head(state, username, rest)
    if sub == "ls-projects":
        with state.lock:
            names = sorted(state.projects)
        return CommandResult(0, "".join(f"{n}\n" for n in names), "")
    return CommandResult(1, "", f"fatal: gerrit {sub}: not found\n")
