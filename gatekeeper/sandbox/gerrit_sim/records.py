"""Snapshots the simulator hands to tests: copies, safe to read from any thread."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimPatchset:
    """One patch set of a change."""

    number: int
    revision: str
    ref: str
    parents: list[str]
    uploader: str
    created_on: int


@dataclass(frozen=True)
class SimMessage:
    """One change message, as Gerrit records them.

    ``text`` is exactly what the author sent with ``--message`` (byte for
    byte; empty when the review only voted) or the simulator's own note
    ("Uploaded patch set 2.", "Change has been successfully merged ...").
    ``comment`` is the full text Gerrit shows and puts into comment-added
    (``"Patch Set 1: Code-Review+2\\n\\n<text>"``).
    """

    author: str
    text: str
    patchset: int
    comment: str = ""
    #: When it was posted (seconds since the epoch; what ``--comments`` shows).
    timestamp: int = 0


@dataclass(frozen=True)
class SimChange:
    """A change as it stands when :meth:`GerritSimulator.get_change` is called.

    ``votes`` maps label to {username: value} for the current patch set
    (zero votes are left out).
    """

    number: int
    project: str
    branch: str
    change_id: str
    subject: str
    status: str
    patchsets: list[SimPatchset]
    votes: dict[str, dict[str, int]]
    messages: list[SimMessage]
    owner: str = ""
    depends_on: list[int] = field(default_factory=list)

    @property
    def current_patchset(self) -> SimPatchset:
        return self.patchsets[-1]


@dataclass(frozen=True)
class ReviewRecord:
    """One ``gerrit review`` exec request, whatever its outcome.

    ``labels`` holds the votes as requested (canonical label spelling where
    the label is known), before range checks; ``message`` is None when no
    ``--message`` was given.
    """

    command: str
    argv: list[str]
    username: str
    labels: dict[str, int]
    message: str | None
    submit: bool
    abandon: bool
    restore: bool
    targets: list[str]
    exit_status: int
    stderr: str
    #: ``--tag`` (or the ReviewInput's tag) and ``--notify``, as given.
    tag: str | None = None
    notify: str | None = None


@dataclass
class CommandResult:
    """What one non-streaming command answers: exit status, stdout, stderr."""

    exit_status: int = 0
    stdout: str = ""
    stderr: str = ""
