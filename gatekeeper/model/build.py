"""One run of one job for one queue item."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from gatekeeper.model.results import NodeWait, Recognised


class BuildResult(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    TIMED_OUT = "TIMED_OUT"
    ERROR = "ERROR"
    NODE_FAILURE = "NODE_FAILURE"
    LOST = "LOST"
    ABORTED = "ABORTED"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"
    #: The change under test does not merge (``Build.conflict`` names it).
    MERGER_FAILURE = "MERGER_FAILURE"
    #: The worker died (or its Gearman server went away) on every one of the
    #: job's ``attempts``.
    RETRY_LIMIT = "RETRY_LIMIT"
    #: No worker had registered the job's Gearman function.
    NOT_REGISTERED = "NOT_REGISTERED"

    @classmethod
    def read(cls, value: str) -> BuildResult:
        """A result as a worker or the database spells it; one the scheduler
        does not know (from a newer worker, say) counts as ERROR."""
        try:
            return cls(value)
        except ValueError:
            return cls.ERROR


@dataclass
class Build:
    """A build's state as the scheduler sees it; the worker reports into it."""

    job: str
    item_uuid: str
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    voting: bool = True
    result: BuildResult | None = None
    url: str = ""
    node: str = ""
    provider: str = ""
    worker: str = ""
    #: Who the certificate of the worker running it names (``worker:<name>``),
    #: as the builds table recorded it; read back by a restarted scheduler.
    worker_identity: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    dispatched_at: float = field(default_factory=time.time)
    canceled: bool = False
    #: For MERGER_FAILURE: the change that did not merge (``project number,patchset``).
    conflict: str = ""
    #: For NODE_FAILURE: what the pool had when the worker gave up waiting.
    node_wait: NodeWait | None = None
    #: For FAILURE and TIMED_OUT: the known failures its worker found in its logs.
    recognised: list[Recognised] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)

    def __str__(self) -> str:
        return f"{self.job} {self.uuid[:7]}"
