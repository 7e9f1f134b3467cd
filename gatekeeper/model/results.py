"""What a build reports while it runs: the data a worker sends when the build
starts and when it ends, and the events the scheduler receives carrying them.

The data lives here, not beside the Gearman encoding that carries it
(:mod:`gatekeeper.dispatch.protocol`), because the scheduler, the workers and
the dispatcher all read it: it is plain data, and plain data is the model's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StartData:
    """The WORK_DATA a worker sends once a node is claimed."""

    uuid: str
    worker: str
    node: str
    provider: str
    url: str
    started_at: float
    #: Filled in by the dispatcher (a requeued job carries its first arguments).
    attempt: int = 1


@dataclass
class CompleteData:
    """The WORK_COMPLETE a worker sends at the end of a build."""

    uuid: str
    result: str
    url: str = ""
    node: str = ""
    provider: str = ""
    worker: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    error: str = ""
    #: For MERGER_FAILURE: the change that did not merge (``project number,patchset``).
    conflict: str = ""


@dataclass
class BuildStarted:
    uuid: str
    data: StartData


@dataclass
class BuildCompleted:
    uuid: str
    data: CompleteData


ResultEvent = BuildStarted | BuildCompleted
