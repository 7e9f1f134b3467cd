"""What pipeline managers act through: the layout, Gerrit, the dispatcher, the
stores, the reporter and the merger.

Its own module, below the managers and the scheduler, so that the managers
(and the restore at start-up) need not import the scheduler that builds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gatekeeper.config.layout import Layout
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.items import ItemStore
from gatekeeper.db.pipeline_state import PipelineStateStore
from gatekeeper.dispatch.client import BuildDispatcher
from gatekeeper.gerrit.source import GerritSource
from gatekeeper.model.metrics import NO_METRICS, Metrics
from gatekeeper.model.results import Recognised
from gatekeeper.scheduler.mail import MailQueue
from gatekeeper.scheduler.merger import MergeQueue
from gatekeeper.scheduler.mutex import Mutexes
from gatekeeper.scheduler.pipeline_state import PipelineStates
from gatekeeper.scheduler.reporter import Reporter, ReportQueue
from gatekeeper.scheduler.routing import Router
from gatekeeper.scheduler.swift import SwiftSigner
from gatekeeper.scheduler.zuul_events import ZuulEvents


@dataclass
class SchedulerContext:
    """What pipeline managers use to act; built once by the scheduler, and
    read and changed only in the scheduler thread."""

    layout: Layout
    source: GerritSource
    dispatcher: BuildDispatcher
    builds: BuildStore
    reporter: Reporter
    zuul_url: str
    log_url: str
    router: Router = field(init=False)
    #: Where queue items are kept across restarts.
    item_store: ItemStore = field(init=False)
    #: Makes a gate item's speculative state before its builds run; None:
    #: workers merge ZUUL_CHANGES themselves.
    merger: MergeQueue | None = None
    #: Runs a callable in the scheduler thread (merge results come back so).
    post: Callable[[Callable[[], None]], None] | None = None
    #: Sends reports in the reporter's threads; outcomes come back through ``post``.
    reports: ReportQueue = field(init=False)
    #: The manager of the pipeline of this name now (it changes on reconfigure);
    #: typed ``object`` so the context need not import the managers above it.
    manager_named: Callable[[str], object] | None = None
    #: Where events, items and builds are counted (nowhere by default).
    metrics: Metrics = NO_METRICS
    #: Job mutexes, shared by every pipeline (a reconfigure keeps the context).
    mutexes: Mutexes = field(default_factory=Mutexes)
    #: Signs jobs' ``swift:`` targets into SWIFT_* parameters; None: the site has no swift.
    swift: SwiftSigner | None = None
    #: A failed job's flaky line for its failure report (None: no such lines).
    flaky_note: Callable[[str], str] | None = None
    #: Sends the smtp reporters' mail in its own thread (None: the site file
    #: has no smtp section, and the layout has no smtp reporter).
    mail: MailQueue | None = None
    #: Each pipeline's run of failures (disable-after-consecutive-failures).
    pipeline_states: PipelineStates = field(init=False)
    #: Makes ``trigger: zuul:`` events when changes enter pipelines and merge.
    zuul_events: ZuulEvents | None = None
    #: The known failures stored for a build (by uuid), for a restored build
    #: that ended before a restart (None: not looked up).
    recognised_of: Callable[[str], list[Recognised]] | None = None

    def __post_init__(self) -> None:
        self.router = Router(self.layout)
        self.item_store = ItemStore(self.builds)
        self.pipeline_states = PipelineStates(PipelineStateStore(self.builds))
