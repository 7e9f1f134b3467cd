"""What a build reports while it runs: the data a worker sends when the build
starts and when it ends, and the events the scheduler receives carrying them.

The data lives here, not beside the Gearman encoding that carries it
(:mod:`gatekeeper.dispatch.protocol`), because the scheduler, the workers and
the dispatcher all read it: it is plain data, and plain data is the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StartData:
    """The WORK_DATA a worker sends once a node is claimed."""

    uuid: str
    worker: str
    node: str
    provider: str
    url: str
    started_at: float
    #: Where the node runs, from its row: the cloud's region and availability
    #: zone ("" where the provider reports none), the label it was launched
    #: for, and the pool image it was booted from with when that image was
    #: built ("" and None for a provider's base image).
    region: str = ""
    availability_zone: str = ""
    label: str = ""
    image: str = ""
    image_built_at: float | None = None
    #: Filled in by the dispatcher (a requeued job carries its first arguments).
    attempt: int = 1
    #: The worker's certificate (PEM) and its signature of this start
    #: (gatekeeper.dispatch.signing); empty on a site with ``insecure: true``.
    certificate: str = ""
    signature: str = ""


@dataclass
class NodeWait:
    """Why a build got no node: what the pool had for its label when the
    worker gave up waiting (carried in a NODE_FAILURE's WORK_COMPLETE into
    its report)."""

    label: str
    #: Seconds the worker waited.
    waited: float
    ready: int = 0
    building: int = 0
    held: int = 0
    in_use: int = 0
    #: max-servers summed over the providers that serve the label.
    capacity: int = 0
    #: Nodes of any label taking that capacity (held ones too).
    occupied: int = 0
    #: The providers that serve the label (none: no provider can launch it).
    providers: list[str] = field(default_factory=list)
    #: Those of them backed off after failed launches (known only where the
    #: pool runs in the worker's process).
    backing_off: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for a person: what was there, and why none was free."""
        if not self.providers:
            return f"no {self.label} node after {self.waited:g}s: no provider serves {self.label}"
        text = (
            f"no {self.label} node after {self.waited:g}s: {self.ready} ready, "
            f"{self.building} building, {self.in_use} in use, {self.held} held, "
            f"{self.occupied} of capacity {self.capacity} taken ({', '.join(self.providers)})"
        )
        if self.backing_off:
            text += f"; backing off: {', '.join(self.backing_off)}"
        return text


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
    #: For NODE_FAILURE: what the pool had when the worker gave up waiting.
    node_wait: NodeWait | None = None
    #: As in :class:`StartData`: who sends it, and the proof.
    certificate: str = ""
    signature: str = ""


@dataclass
class BuildStarted:
    uuid: str
    data: StartData


@dataclass
class BuildCompleted:
    uuid: str
    data: CompleteData


ResultEvent = BuildStarted | BuildCompleted
