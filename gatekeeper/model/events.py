"""Events that arrive from the outside world (Gerrit, timers, replays)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Account and Approval are NamedTuples, not frozen dataclasses: every event
# carries a few, and a tuple is several times cheaper to build.


class Account(NamedTuple):
    """A Gerrit account as it appears in events (any field may be missing)."""

    username: str = ""
    name: str = ""
    email: str = ""


class Approval(NamedTuple):
    """One vote carried by an event.

    ``old_value`` is set only when Gerrit says the vote changed in this event
    (Gerrit >= 2.13 sends every current vote of the author on each comment,
    marking the changed ones with ``oldValue``).
    """

    label: str
    value: int
    old_value: int | None = None
    by: Account | None = None

    @property
    def changed(self) -> bool:
        return self.old_value is not None and self.old_value != self.value


@dataclass
class TriggerEvent:
    """One event from a listener, normalised; the scheduler's input.

    ``change`` and ``patchset`` are integers whatever Gerrit sent (strings up
    to 2.13, integers from 2.14). ``branch`` is a short branch name; ``ref`` is
    always a full ref name (``refs/heads/master``, ``refs/tags/1.0``).
    ``legacy_approvals`` is true for Gerrit older than 2.13, whose
    comment-added events carry only the votes changed by that comment.
    """

    type: str
    project: str = ""
    branch: str = ""
    ref: str = ""
    change: int | None = None
    patchset: int | None = None
    change_id: str = ""
    change_url: str = ""
    revision: str = ""
    old_rev: str = ""
    new_rev: str = ""
    comment: str = ""
    approvals: tuple[Approval, ...] = ()
    account: Account | None = None
    created_on: float = field(default_factory=time.time)
    received_at: float = field(default_factory=time.monotonic)
    legacy_approvals: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def change_key(self) -> str:
        return f"{self.change},{self.patchset}"

    def changed_approvals(self) -> list[Approval]:
        """The votes this event cast (a transition), not the ones it repeats."""
        if self.legacy_approvals:
            return list(self.approvals)
        return [a for a in self.approvals if a.changed]

    def __str__(self) -> str:
        where = f"{self.change},{self.patchset}" if self.change else self.ref
        return f"<{self.type} {self.project} {where}>"
