"""Metrics for Prometheus, in a registry of their own (the web serves it).

Events are counted as they happen; levels (nodes by state, label and
provider; Gearman's queue; max-servers) are read from their :class:`Census`
when Prometheus scrapes, so they are never stale and cost nothing between
scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from gatekeeper.errors import GatekeeperError
from gatekeeper.model.metrics import Census, Metrics

log = logging.getLogger(__name__)

# Seconds: builds run for minutes to hours, nodes boot in seconds to minutes.
_LONG = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
_SHORT = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class _CensusCollector(Collector):
    """Reads the levels at scrape time."""

    def __init__(self, census: Census) -> None:
        self.census = census

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nodes = GaugeMetricFamily(
            "gatekeeper_nodes",
            "Nodes by state, label and provider",
            labels=["state", "label", "provider"],
        )
        try:
            counts = self.census.nodes()
        except (GatekeeperError, SQLAlchemyError) as exc:
            # A scrape while the database is away shows no nodes rather than failing.
            log.warning("metrics: cannot count nodes: %s", exc)
            counts = {}
        for (label, provider, state), n in sorted(counts.items()):
            nodes.add_metric([state, label, provider], n)
        yield nodes
        limit = GaugeMetricFamily(
            "gatekeeper_provider_max_servers", "A provider's max-servers", labels=["provider"]
        )
        for provider, n in sorted(self.census.max_servers.items()):
            limit.add_metric([provider], n)
        yield limit
        yield from self._providers()
        queue = self.census.gearman()
        if queue is not None:
            jobs = GaugeMetricFamily(
                "gatekeeper_gearman_jobs",
                "Jobs in the embedded Gearman server (waiting: no worker took them yet)",
                labels=["state"],
            )
            jobs.add_metric(["total"], queue.total)
            jobs.add_metric(["running"], queue.running)
            jobs.add_metric(["waiting"], queue.waiting)
            yield jobs

    def _providers(self) -> Iterator[GaugeMetricFamily]:
        rate = GaugeMetricFamily(
            "gatekeeper_provider_failure_rate",
            "Failed share of a job's finished runs on a provider over the insights window "
            '(job "" is every job together)',
            labels=["job", "provider"],
        )
        flagged = GaugeMetricFamily(
            "gatekeeper_provider_flagged",
            "1 if the provider fails the job significantly more often than the others "
            "(Fisher's exact test, Holm-corrected)",
            labels=["job", "provider"],
        )
        try:
            rates = self.census.provider_rates()
        except (GatekeeperError, SQLAlchemyError) as exc:
            log.warning("metrics: cannot read provider failure rates: %s", exc)
            rates = {}
        for (job, provider), (value, worse) in sorted(rates.items()):
            rate.add_metric([job, provider], value)
            flagged.add_metric([job, provider], 1.0 if worse else 0.0)
        yield rate
        yield flagged


class PrometheusMetrics(Metrics):
    """Counters and histograms in ``registry``; thread-safe (prometheus_client
    locks its own values)."""

    def __init__(self, census: Census | None = None) -> None:
        # Not auto_describe: that would read the census (the database) now.
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "gatekeeper_events", "Gerrit events acted on, by type", ["type"], registry=r
        )
        self.event_lag = Histogram(
            "gatekeeper_event_lag_seconds",
            "From Gerrit's eventCreatedOn to the item's enqueue",
            ["pipeline"],
            buckets=_SHORT,
            registry=r,
        )
        self.items = Gauge(
            "gatekeeper_pipeline_items", "Items in a pipeline now", ["pipeline"], registry=r
        )
        self.enqueued = Counter(
            "gatekeeper_pipeline_enqueued",
            "Items that entered a pipeline",
            ["pipeline"],
            registry=r,
        )
        self.resident = Histogram(
            "gatekeeper_item_resident_seconds",
            "From an item's enqueue to its dequeue",
            ["pipeline"],
            buckets=_LONG,
            registry=r,
        )
        self.builds = Counter(
            "gatekeeper_builds",
            "Finished builds",
            ["pipeline", "job", "result", "provider", "label"],
            registry=r,
        )
        self.duration = Histogram(
            "gatekeeper_build_duration_seconds",
            "A build's time on its node",
            ["job", "provider"],
            buckets=_LONG,
            registry=r,
        )
        self.node_wait = Histogram(
            "gatekeeper_build_node_wait_seconds",
            "From a build's dispatch to its node claimed (Gearman's queue and the node wait)",
            ["label"],
            buckets=_SHORT,
            registry=r,
        )
        self.launches = Counter(
            "gatekeeper_launches",
            "Node launches by outcome (ready, error.quota, error.unknown)",
            ["provider", "label", "result"],
            registry=r,
        )
        self.launch_errors = Counter(
            "gatekeeper_launch_errors", "Node launches that failed", ["provider"], registry=r
        )
        self.boot = Histogram(
            "gatekeeper_node_boot_seconds",
            "From a launch's start to the node ready",
            ["provider"],
            buckets=_SHORT,
            registry=r,
        )
        self.reconnects = Counter(
            "gatekeeper_gerrit_reconnects", "Gerrit event stream reopened after a loss", registry=r
        )
        self.catch_ups = Counter("gatekeeper_catchups", "Catch-ups run against Gerrit", registry=r)
        self.recovered = Counter(
            "gatekeeper_catchup_recovered_events",
            "Events a catch-up found that the stream had missed",
            registry=r,
        )
        self.reports = Histogram(
            "gatekeeper_report_seconds",
            "From a report's making to its delivery (or giving up)",
            ["kind", "outcome"],
            buckets=_SHORT,
            registry=r,
        )
        if census is not None:
            r.register(_CensusCollector(census))

    def event(self, type: str) -> None:
        self.events.labels(type).inc()

    def event_enqueued(self, pipeline: str, lag: float) -> None:
        self.event_lag.labels(pipeline).observe(max(0.0, lag))

    def item_enqueued(self, pipeline: str, project: str, current: int) -> None:
        self.enqueued.labels(pipeline).inc()
        self.items.labels(pipeline).set(current)

    def item_dequeued(self, pipeline: str, project: str, current: int, resident: float) -> None:
        self.items.labels(pipeline).set(current)
        self.resident.labels(pipeline).observe(max(0.0, resident))

    def build_started(self, pipeline: str, job: str, label: str, wait: float) -> None:
        self.node_wait.labels(label).observe(max(0.0, wait))

    def build_finished(
        self, pipeline: str, job: str, result: str, provider: str, label: str, duration: float
    ) -> None:
        self.builds.labels(pipeline, job, result, provider, label).inc()
        if duration > 0:
            self.duration.labels(job, provider).observe(duration)

    def launch(self, provider: str, label: str, result: str, seconds: float) -> None:
        self.launches.labels(provider, label, result).inc()
        if result == "ready":
            self.boot.labels(provider).observe(max(0.0, seconds))
        else:
            self.launch_errors.labels(provider).inc()

    def gerrit_reconnect(self) -> None:
        self.reconnects.inc()

    def catch_up(self, recovered: int) -> None:
        self.catch_ups.inc()
        self.recovered.inc(recovered)

    def report(self, kind: str, outcome: str, seconds: float) -> None:
        self.reports.labels(kind, outcome).observe(max(0.0, seconds))
