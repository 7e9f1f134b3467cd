"""The Gerrit reporter: votes, comments and submits with ``gerrit review``."""

from __future__ import annotations

import logging

from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.model.change import Change

log = logging.getLogger(__name__)


def gerrit_label(change: Change, name: str) -> str:
    """The label as Gerrit spells it: from the change if it carries it, else
    Title-Case per dash (``code-review`` -> ``Code-Review``)."""
    known = change.gerrit_label_name(name)
    if known:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


class GerritReporter:
    """Sends reviews for the scheduler thread."""

    def __init__(self, connection: GerritConnection) -> None:
        self.connection = connection

    def report(self, change: Change, message: str, labels: dict[str, int], submit: bool) -> None:
        """:raises GerritError: Gerrit refused the review (or the submit)."""
        spelled = {gerrit_label(change, k): v for k, v in labels.items()}
        votes = " ".join(f"{k}{v:+d}" for k, v in spelled.items())
        self.connection.review(
            change.project, change.number, change.patchset, message, spelled, submit
        )
        log.info(
            "review posted on %s: %s%s",
            change,
            votes or "(no votes)",
            " and submitted" if submit else "",
        )
