"""The metrics seam: what the scheduler, the pool, the catch-up and the
reporter tell whoever counts.

Every emitter holds a :class:`Metrics` and calls one method per thing that
happened, one line at the call site. This base class does nothing, so a
component built without metrics (a test, a tool) needs no wiring; the app
hands real ones down (:mod:`gatekeeper.metrics`: Prometheus, statsd, both
through :class:`Tee`). It lives in the model, the lowest room, so that every
emitter may import it. Methods are called from many threads and must not
raise or wait on the network (statsd is a UDP datagram).

What is a level rather than an event (nodes by state, Gearman's queue) is
not pushed through here: the implementations read it when they need it
(:class:`Census`), at scrape time or on a timer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: ``(label, provider, state) -> number of nodes``.
NodeCounts = Mapping[tuple[str, str, str], int]
#: ``(job, provider) -> (failure rate, significantly worse)``; job "" is
#: every job together (see gatekeeper.insights.providers).
ProviderRates = Mapping[tuple[str, str], tuple[float, bool]]


@dataclass(frozen=True)
class GearmanQueue:
    """Jobs in the embedded Gearman server now."""

    total: int
    running: int
    waiting: int


class Metrics:
    """Counts nothing. Subclasses override what they record."""

    def event(self, type: str) -> None:
        """A Gerrit event the scheduler acts on (once, however it arrived)."""

    def event_enqueued(self, pipeline: str, lag: float) -> None:
        """An event enqueued an item in ``pipeline``, ``lag`` seconds after
        Gerrit made it (``eventCreatedOn``)."""

    def item_enqueued(self, pipeline: str, project: str, current: int) -> None:
        """An item entered ``pipeline``, which now holds ``current`` items."""

    def item_dequeued(self, pipeline: str, project: str, current: int, resident: float) -> None:
        """An item left ``pipeline`` after ``resident`` seconds in it."""

    def build_started(self, pipeline: str, job: str, label: str, wait: float) -> None:
        """A build got its node, ``wait`` seconds after it was dispatched."""

    def build_finished(
        self, pipeline: str, job: str, result: str, provider: str, label: str, duration: float
    ) -> None:
        """A build ended with ``result`` after ``duration`` seconds on a node."""

    def launch(self, provider: str, label: str, result: str, seconds: float) -> None:
        """A node launch ended: ``ready``, or ``error.<kind>`` (Nodepool's words)."""

    def gerrit_reconnect(self) -> None:
        """The Gerrit event stream opened again after it was lost."""

    def catch_up(self, recovered: int) -> None:
        """A catch-up ran and found ``recovered`` events the stream had missed."""

    def report(self, kind: str, outcome: str, seconds: float) -> None:
        """A report left the queue: ``sent`` or ``failed``, ``seconds`` after it was made."""


#: The default: every emitter starts with this and counts nothing.
NO_METRICS = Metrics()


class Tee(Metrics):
    """Hands every call to each of ``sinks`` (Prometheus and statsd, say)."""

    def __init__(self, *sinks: Metrics) -> None:
        self.sinks = sinks

    def event(self, type: str) -> None:
        for sink in self.sinks:
            sink.event(type)

    def event_enqueued(self, pipeline: str, lag: float) -> None:
        for sink in self.sinks:
            sink.event_enqueued(pipeline, lag)

    def item_enqueued(self, pipeline: str, project: str, current: int) -> None:
        for sink in self.sinks:
            sink.item_enqueued(pipeline, project, current)

    def item_dequeued(self, pipeline: str, project: str, current: int, resident: float) -> None:
        for sink in self.sinks:
            sink.item_dequeued(pipeline, project, current, resident)

    def build_started(self, pipeline: str, job: str, label: str, wait: float) -> None:
        for sink in self.sinks:
            sink.build_started(pipeline, job, label, wait)

    def build_finished(
        self, pipeline: str, job: str, result: str, provider: str, label: str, duration: float
    ) -> None:
        for sink in self.sinks:
            sink.build_finished(pipeline, job, result, provider, label, duration)

    def launch(self, provider: str, label: str, result: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.launch(provider, label, result, seconds)

    def gerrit_reconnect(self) -> None:
        for sink in self.sinks:
            sink.gerrit_reconnect()

    def catch_up(self, recovered: int) -> None:
        for sink in self.sinks:
            sink.catch_up(recovered)

    def report(self, kind: str, outcome: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.report(kind, outcome, seconds)


@dataclass
class Census:
    """Where the levels are read from: the node table, the providers'
    max-servers, the embedded Gearman server (None when this process
    runs none), and the failure rates per provider."""

    nodes: Callable[[], NodeCounts]
    max_servers: Mapping[str, int] = field(default_factory=dict)
    gearman: Callable[[], GearmanQueue | None] = lambda: None
    #: Failure rates per provider (a cached report: cheap to ask).
    provider_rates: Callable[[], ProviderRates] = lambda: {}
