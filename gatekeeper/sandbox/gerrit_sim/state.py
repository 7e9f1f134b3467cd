"""Everything the simulator knows, behind one lock, and the event fan-out.

Server threads (one per SSH exec request) read and change this state; every
change happens under ``SimState.lock``, and events are appended and fanned
out under the same lock, so every subscriber sees them in emission order.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatekeeper.errors import GerritError
from gatekeeper.sandbox.gerrit_sim.git import CommitInfo, Repo
from gatekeeper.sandbox.gerrit_sim.records import (
    ReviewRecord,
    SimChange,
    SimMessage,
    SimPatchset,
)

log = logging.getLogger(__name__)

#: Key of a subscriber item that is a raw line to send as is (see emit_raw).
RAW_LINE = "__raw_line__"

_PROJECT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")


#: The version the simulator announces unless told otherwise.
DEFAULT_VERSION = "3.11.1"
#: The versions whose dialect it speaks (a ``-sim`` suffix is added where shown).
DIALECTS = ("3", "2.13")


def dialect_of(version: str) -> str:
    """``"3"`` for 3.x versions, ``"2.13"`` for 2.13.

    :raises GerritError: another version (the simulator speaks only these two).
    """
    if version == "2.13" or version.startswith("2.13."):
        return "2.13"
    major, _, _ = version.partition(".")
    if major == "3" and version[1:2] == ".":
        return "3"
    raise GerritError(f"the simulator speaks Gerrit 3.x or 2.13, not {version!r}")


def now() -> int:
    return int(time.time())


@dataclass
class Account:
    """A user who may log in with one public key."""

    username: str
    name: str
    email: str
    key_type: str
    key_base64: str
    groups: frozenset[str] = frozenset()
    #: The 'Stream Events' global capability (Administrators have it anyway).
    stream_events: bool = True

    def attr(self) -> dict[str, str]:
        """Gerrit's account attribute (name, email, username)."""
        return {"name": self.name, "email": self.email, "username": self.username}


#: The group every account is in, as in Gerrit.
REGISTERED_USERS = "Registered Users"


@dataclass(frozen=True)
class LabelGrant:
    """A ``label-NAME = MIN..MAX group GROUP`` rule of a project's access."""

    label: str
    group: str
    minimum: int
    maximum: int


#: Submit requirements Gerrit 3.6+ has by default: label -> the vote needed
#: (and the label's lowest value blocks).
DEFAULT_REQUIREMENTS = {"Code-Review": 2, "Verified": 2, "Workflow": 1}


@dataclass
class Vote:
    value: int
    granted_on: int


@dataclass
class PatchSet:
    """One uploaded revision; ``votes`` is label -> username -> vote."""

    number: int
    commit: CommitInfo
    ref: str
    uploader: str
    created_on: int
    kind: str = "REWORK"
    votes: dict[str, dict[str, Vote]] = field(default_factory=dict)

    def current_votes(self) -> dict[str, dict[str, int]]:
        return {
            label: {user: v.value for user, v in users.items() if v.value != 0}
            for label, users in self.votes.items()
            if any(v.value != 0 for v in users.values())
        }


@dataclass
class Change:
    """A change under review."""

    number: int
    project: str
    branch: str
    change_id: str
    owner: str
    created_on: int
    status: str = "NEW"
    topic: str = ""
    last_updated: int = 0
    hashtags: list[str] = field(default_factory=list)
    wip: bool = False
    private: bool = False
    #: Reviewers added with ``gerrit set-reviewers`` (usernames, in order).
    reviewers: list[str] = field(default_factory=list)
    patchsets: list[PatchSet] = field(default_factory=list)
    messages: list[SimMessage] = field(default_factory=list)

    @property
    def current(self) -> PatchSet:
        return self.patchsets[-1]

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass
class Project:
    name: str
    repo: Repo
    #: What HEAD names (``gerrit set-head`` moves it).
    head: str = "refs/heads/master"
    # Held for a whole push (receive-pack plus change creation) or submit,
    # so ref updates of one project never interleave.
    lock: threading.Lock = field(default_factory=threading.Lock)


class SimState:
    """The simulator's data; shared by all server threads, guarded by ``lock``."""

    def __init__(self, root: Path, web_url: str, version: str = DEFAULT_VERSION) -> None:
        self.root = root
        #: The Gerrit version spoken (see :func:`dialect_of`).
        self.version = version
        #: ``"3"`` (3.x shapes) or ``"2.13"``.
        self.dialect = dialect_of(version)
        self.web_url = web_url if web_url.endswith("/") else web_url + "/"
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.projects: dict[str, Project] = {}
        self.changes: dict[int, Change] = {}
        self.last_number = 0
        self.reviews: list[ReviewRecord] = []
        self._events: list[dict[str, Any]] = []
        self._subscribers: list[queue.SimpleQueue[dict[str, Any] | None]] = []
        # The stream-events sessions among the subscribers (the rest are the
        # simulator's own listener dispatcher).
        self._streams: list[queue.SimpleQueue[dict[str, Any] | None]] = []
        #: While true, events are recorded but no stream-events session gets
        #: them: Gerrit losing output (a test says when).
        self.withholding = False
        #: Events that reached no stream-events session (none connected, or withheld).
        self.unstreamed = 0
        #: Label permissions, project ("" for All-Projects) -> grants. A label
        #: nobody is granted anywhere is open to every account (the
        #: simulator's default, so tests that do not care need no access setup).
        self.grants: dict[str, list[LabelGrant]] = {}
        #: Submit requirements per project (label -> vote needed); absent:
        #: DEFAULT_REQUIREMENTS.
        self.requirements: dict[str, dict[str, int]] = {}

    def speaks_3x(self) -> bool:
        """Whether the dialect is 3.x (else 2.13)."""
        return not self.version.startswith("2.")

    def vote_range(self, project: str, username: str, label: str) -> tuple[int, int] | None:
        """The values ``username`` may vote on ``label`` in ``project``: the
        union of the grants of the account's groups (here and in
        All-Projects); None when the label has no grants (open to all)."""
        with self.lock:
            grants = [
                g
                for g in self.grants.get("", []) + self.grants.get(project, [])
                if g.label == label
            ]
            account = self.accounts.get(username)
        if not grants:
            return None
        groups = {REGISTERED_USERS, *(account.groups if account else ())}
        mine = [g for g in grants if g.group in groups]
        if not mine:
            return (0, 0)
        return min(g.minimum for g in mine), max(g.maximum for g in mine)

    def requirements_of(self, project: str) -> dict[str, int]:
        with self.lock:
            return dict(self.requirements.get(project, DEFAULT_REQUIREMENTS))

    # -- accounts and projects ------------------------------------------------

    def account_by_email(self, email: str) -> Account | None:
        with self.lock:
            return next((a for a in self.accounts.values() if a.email == email), None)

    def project(self, name: str) -> Project:
        """The project called ``name``.

        :raises GerritError: no such project.
        """
        with self.lock:
            project = self.projects.get(name)
        if project is None:
            raise GerritError(f"project {name} not found")
        return project

    def create_project(self, name: str, files: dict[str, str | bytes], branch: str) -> None:
        """Create the project's bare repository with one commit.

        :raises GerritError: the name is unsafe or taken, or git failed.
        """
        if not _PROJECT_NAME.fullmatch(name) or ".." in name or name.endswith(".git"):
            raise GerritError(f"invalid project name {name!r}")
        with self.lock:
            if name in self.projects:
                raise GerritError(f"project {name} already exists")
            repo = Repo(self.root / "git" / f"{name}.git")
            self.projects[name] = Project(name, repo, head=f"refs/heads/{branch}")
        repo.init(files, branch)

    # -- changes ----------------------------------------------------------------

    def change_url(self, change: Change) -> str:
        return f"{self.web_url}{change.number}"

    def find_revision(self, project: str, sha: str) -> tuple[Change, PatchSet] | None:
        """The change and patch set whose revision is ``sha`` in ``project``."""
        with self.lock:
            for change in self.changes.values():
                if change.project != project:
                    continue
                for ps in change.patchsets:
                    if ps.commit.sha == sha:
                        return change, ps
        return None

    def add_patchset(
        self, project: str, branch: str, commit: CommitInfo, uploader: str, topic: str = ""
    ) -> tuple[Change, PatchSet] | None:
        """Record ``commit`` as a new change or a new patch set of its open change.

        Returns None when the commit is already known or its change is closed.
        """
        with self.lock:
            if self.find_revision(project, commit.sha) is not None:
                return None
            change = next(
                (
                    c
                    for c in self.changes.values()
                    if c.project == project
                    and c.branch == branch
                    and c.change_id == commit.change_id
                ),
                None,
            )
            if change is not None and not change.is_open:
                log.info("ignoring push of %s: change %d is closed", commit.sha, change.number)
                return None
            timestamp = now()
            if change is None:
                # Numbers are never reused, even after a change is deleted.
                self.last_number += 1
                number = self.last_number
                change = Change(number, project, branch, commit.change_id, uploader, timestamp)
                self.changes[number] = change
            if topic:
                change.topic = topic
            ps_number = len(change.patchsets) + 1
            kind = "REWORK"
            if change.patchsets:
                project_repo = self.projects[project].repo
                kind = project_repo.patchset_kind(
                    change.current.commit, commit, with_message_update=self.dialect == "3"
                )
            ref = f"refs/changes/{change.number % 100:02d}/{change.number}/{ps_number}"
            patchset = PatchSet(ps_number, commit, ref, uploader, timestamp, kind)
            change.patchsets.append(patchset)
            change.last_updated = timestamp
            change.messages.append(
                SimMessage(uploader, f"Uploaded patch set {ps_number}.", ps_number, "", timestamp)
            )
            return change, patchset

    def depends_on(self, change: Change) -> list[tuple[Change, PatchSet]]:
        """Changes whose revision is a git parent of ``change``'s current patch set."""
        with self.lock:
            found = []
            for parent in change.current.commit.parents:
                hit = self.find_revision(change.project, parent)
                if hit is not None and hit[0].number != change.number:
                    found.append(hit)
            return found

    def needed_by(self, change: Change) -> list[Change]:
        """Open changes whose current patch set sits on one of ``change``'s revisions."""
        with self.lock:
            revisions = {ps.commit.sha for ps in change.patchsets}
            return [
                other
                for other in self.changes.values()
                if other.is_open
                and other.project == change.project
                and other.number != change.number
                and revisions.intersection(other.current.commit.parents)
            ]

    def snapshot(self, number: int) -> SimChange:
        """A copy of change ``number``.

        :raises KeyError: no such change.
        """
        with self.lock:
            change = self.changes[number]
            return SimChange(
                number=change.number,
                project=change.project,
                branch=change.branch,
                change_id=change.change_id,
                subject=change.current.commit.subject,
                status=change.status,
                patchsets=[
                    SimPatchset(
                        ps.number,
                        ps.commit.sha,
                        ps.ref,
                        list(ps.commit.parents),
                        ps.uploader,
                        ps.created_on,
                    )
                    for ps in change.patchsets
                ],
                votes=change.current.current_votes(),
                messages=list(change.messages),
                owner=change.owner,
                depends_on=[c.number for c, _ in self.depends_on(change)],
            )

    # -- events -------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """Record ``event`` and hand it to every subscriber, in emission order."""
        with self.lock:
            self._events.append(event)
            streamed = False
            for subscriber in self._subscribers:
                is_stream = subscriber in self._streams
                if is_stream and self.withholding:
                    continue
                streamed = streamed or is_stream
                subscriber.put(event)
            if not streamed:
                self.unstreamed += 1

    def emit_raw(self, text: str) -> None:
        """Send ``text`` as one stream-events line, unrecorded: a test's way of
        showing listeners a line no real Gerrit event looks like."""
        with self.lock:
            for subscriber in self._subscribers:
                subscriber.put({RAW_LINE: text})

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._events)

    def subscribe(self, stream: bool = False) -> queue.SimpleQueue[dict[str, Any] | None]:
        """A queue that receives every event emitted from now on (None = stop);
        ``stream``: for a stream-events session."""
        subscriber: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        with self.lock:
            self._subscribers.append(subscriber)
            if stream:
                self._streams.append(subscriber)
        return subscriber

    def stream_count(self) -> int:
        with self.lock:
            return len(self._streams)

    def unsubscribe(self, subscriber: queue.SimpleQueue[dict[str, Any] | None]) -> None:
        with self.lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            if subscriber in self._streams:
                self._streams.remove(subscriber)
        subscriber.put(None)

    def close_subscribers(self) -> None:
        """Wake every subscriber with the stop marker."""
        with self.lock:
            subscribers, self._subscribers = self._subscribers, []
            self._streams = []
        for subscriber in subscribers:
            subscriber.put(None)
