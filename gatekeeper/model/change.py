"""A change under test and its place in a pipeline's queue."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatekeeper.model.build import Build


def change_ref(number: int, patchset: int) -> str:
    """Gerrit's ref of a patchset: ``refs/changes/<last 2 digits>/<number>/<patchset>``."""
    return f"refs/changes/{number % 100:02d}/{number}/{patchset}"


@dataclass
class Change:
    """A Gerrit change at one patchset, as the scheduler knows it.

    ``approvals`` maps a label (Gerrit's spelling) to the votes on the current
    patchset: one value per account username. ``files`` are the paths the
    patchset touches, ``/COMMIT_MSG`` included, as Gerrit lists them.

    A change read from Gerrit is complete. One made from an event alone (a
    dry run) knows only what the event carried: ``files`` is None when
    unknown, and the ``*_known`` flags say whether a requirement on the
    status, the current patchset or votes by others can be decided.
    """

    project: str
    branch: str
    number: int
    patchset: int
    ref: str = ""
    revision: str = ""
    change_id: str = ""
    subject: str = ""
    url: str = ""
    owner: str = ""
    status: str = "NEW"
    is_current_patchset: bool = True
    approvals: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] | None = None
    #: Change-Ids named by the commit message's ``Depends-On:`` footers.
    depends_on: list[str] = field(default_factory=list)
    #: Changes whose patchsets are git parents of this one: (number, whether
    #: that patchset is still the parent change's current one).
    git_parents: list[tuple[int, bool]] = field(default_factory=list)
    #: Open changes built on one of this change's patchsets (git children).
    git_children: list[int] = field(default_factory=list)
    #: For a ref update (``number`` 0): the ref's old and new revision.
    old_rev: str = ""
    new_rev: str = ""
    status_known: bool = True
    current_known: bool = True
    votes_complete: bool = True

    @classmethod
    def ref_update(cls, project: str, branch: str, ref: str, old_rev: str, new_rev: str) -> Change:
        """A ref update as the item a pipeline queues: change number 0, tested
        at ``new_rev``."""
        return cls(
            project=project,
            branch=branch,
            number=0,
            patchset=0,
            ref=ref,
            revision=new_rev,
            old_rev=old_rev,
            new_rev=new_rev,
        )

    @property
    def key(self) -> str:
        return f"{self.number},{self.patchset}"

    @property
    def refspec(self) -> str:
        """The change's ref; absent on a ref update. Layout parameter functions
        written for Zuul v2 tell the two apart with ``hasattr(change, 'refspec')``."""
        if self.is_ref:
            raise AttributeError("a ref update has no refspec")
        return self.ref

    @property
    def is_ref(self) -> bool:
        """A ref update (a merge moved a branch, a tag was pushed), not a change."""
        return self.number == 0

    @property
    def is_branch_tip(self) -> bool:
        """A ref item with no revision (a timer's): tested at its branch's tip
        when the build starts."""
        return self.is_ref and not self.new_rev

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"

    @property
    def is_merged(self) -> bool:
        return self.status == "MERGED"

    def label_values(self, label: str) -> list[int]:
        """Every vote on ``label`` (matched regardless of case)."""
        for name, votes in self.approvals.items():
            if name.lower() == label.lower():
                return list(votes.values())
        return []

    def gerrit_label_name(self, label: str) -> str | None:
        """Gerrit's own spelling of ``label``, if the change carries it."""
        for name in self.approvals:
            if name.lower() == label.lower():
                return name
        return None

    def __str__(self) -> str:
        if self.is_ref:
            return f"{self.project} {self.ref} {self.new_rev[:7] or '(tip)'}"
        return f"{self.project} {self.key}"


class MergeState(StrEnum):
    """Where the merger's work on a gate item's tested state stands.

    The values are what status output shows; an unasked merge is the empty
    string, so ``if item.merge_state:`` reads "has the merger been asked".
    """

    #: Not asked yet for the state the item is tested on now.
    UNASKED = ""
    PENDING = "pending"
    #: Merged: ``QueueItem.zuul_ref`` holds the state its builds test.
    OK = "ok"
    #: The item's own change does not merge (``QueueItem.merge_conflict`` says why).
    CONFLICT = "conflict"
    #: A change ahead no longer merges: wait until the queue changes.
    BLOCKED = "blocked"
    #: The merger failed without a conflict: ask again at ``QueueItem.merge_retry_at``.
    RETRY = "retry"


@dataclass
class QueueItem:
    """A change enqueued in a pipeline; owned by the scheduler thread."""

    change: Change
    pipeline: str
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    enqueued_at: float = field(default_factory=time.time)
    event_received_at: float | None = None
    builds: dict[str, Build] = field(default_factory=dict)
    #: The job trees this item runs (the layout's JobTree objects), chosen at
    #: enqueue time for its branch and files.
    job_trees: list[Any] = field(default_factory=list)
    #: In a dependent pipeline: the changes ahead this item's builds are
    #: testing it on top of (``project number,patchset``), in queue order;
    #: None until its first pass.
    tested_with: list[str] | None = None
    #: A digest of ``tested_with`` (and what merged before it), compared on
    #: every pass instead of the list; None until its first pass.
    tested_digest: int | None = None
    #: Open changes this one needs (git parents, Depends-On), dependencies first:
    #: tested with it in an independent pipeline, queued ahead of it in a gate.
    needed: list[Change] = field(default_factory=list)
    #: In a dependent pipeline with a merger: the ref holding the merged state
    #: its builds test (``refs/zuul/<branch>/Z...``), and where the merge of
    #: its current tested state stands.
    zuul_ref: str = ""
    merge_state: MergeState = MergeState.UNASKED
    merge_conflict: str = ""
    #: The merge request whose answer counts (an older one's is stale), and
    #: for a merger that failed without a conflict, how often and when to ask again.
    merge_token: str = ""
    merge_errors: int = 0
    merge_retry_at: float = 0.0
    reported: bool = False
    #: Its report is out (sent by a reporter thread); it leaves its queue when
    #: the outcome comes back.
    reporting: bool = False
    dequeued: bool = False
    merge_failed: bool = False
    report_error: str = ""

    def forget_merge(self) -> None:
        """What it is tested on changed: the merger's work for the old state no
        longer counts (with the token cleared, an answer still on its way is stale)."""
        self.zuul_ref, self.merge_state, self.merge_conflict = "", MergeState.UNASKED, ""
        self.merge_token, self.merge_errors = "", 0

    def all_builds_done(self, job_names: list[str]) -> bool:
        return all(name in self.builds and self.builds[name].done for name in job_names)

    def __str__(self) -> str:
        return f"{self.change} in {self.pipeline}"
