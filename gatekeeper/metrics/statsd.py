"""Metrics for statsd under the names Zuul v2.5 and Nodepool used, so the
Graphite and Grafana dashboards built for them (OpenStack's "Zuul Status"
and "Nodepool" boards, say) work against gatekeeper unchanged.

Sent with the ``statsd`` package (pystatsd): the client Zuul, Nodepool and
gear themselves use, small, pure Python, with no thread or buffer of its
own; each call is one UDP datagram, so a statsd that is down costs nothing
and blocks nothing. Timers are in milliseconds, as statsd expects.

Event names (counters ``c``, timers ``ms``, gauges ``g``)::

    gerrit.event.<type>                                   c
    zuul.pipeline.<p>.current_changes                     g
    zuul.pipeline.<p>.total_changes                       c
    zuul.pipeline.<p>.resident_time                       ms
    zuul.pipeline.<p>.<org>.<project>.{total_changes,resident_time}
    zuul.pipeline.<p>.event_enqueue_time                  ms   (Zuul 3's name)
    zuul.pipeline.<p>.all_jobs                            c
    zuul.pipeline.<p>.job.<job>.<RESULT>                  c, and ms on SUCCESS/FAILURE
    zuul.pipeline.<p>.job.<job>.wait_time                 ms
    zuul.pipeline.<p>.label.<label>.wait_time             ms
    nodepool.launch.<result>                              c, ms
    nodepool.launch.provider.<p>.<result>                 c, ms
    nodepool.launch.image.<label>.<result>                c, ms
    nodepool.nodes.<state>                                g
    nodepool.label.<l>.nodes.<state>                      g
    nodepool.provider.<p>.nodes.<state>                   g
    nodepool.provider.<p>.max_servers                     g
    zuul.geard.queue.{total,running,waiting}              g

and, where neither had a name (gatekeeper's own, under ``gatekeeper.``)::

    gatekeeper.provider.<p>.label.<l>.job.<job>.<RESULT>  c   (failures per cloud)
    gatekeeper.gerrit.reconnects                          c
    gatekeeper.gerrit.catchup.{runs,recovered}            c
    gatekeeper.report.<kind>.<outcome>                    ms
"""

from __future__ import annotations

import logging
import re
import threading

import statsd

from gatekeeper.errors import ConfigError
from gatekeeper.model.metrics import Census, Metrics

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def key(name: str) -> str:
    """One component of a metric name: a job ``gate.tempest`` becomes
    ``gate_tempest`` (as Zuul did), and nothing a name holds (``:``, ``|``,
    a newline) can break the datagram or start another metric."""
    return _UNSAFE.sub("_", name) or "_"


def project_key(project: str) -> str:
    """``openstack/nova`` -> ``openstack.nova``, each part made safe."""
    return ".".join(key(part) for part in project.split("/"))


def _ms(seconds: float) -> float:
    return max(0.0, seconds) * 1000.0


class StatsdMetrics(Metrics):
    """Sends each call as datagrams; a thread (``statsd-levels``, started by
    :meth:`start`) sends the levels every ``interval`` seconds."""

    def __init__(
        self,
        host: str,
        port: int = 8125,
        prefix: str = "",
        census: Census | None = None,
        interval: float = 10.0,
    ) -> None:
        try:
            self.client = statsd.StatsClient(host, port, prefix=prefix or None)
        except OSError as exc:
            raise ConfigError(f"statsd: cannot use {host}:{port}: {exc}") from exc
        self.census = census
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The states seen last time, per key: a state that emptied is sent as 0.
        self._last_levels: set[str] = set()

    # -- events -------------------------------------------------------------
    def event(self, type: str) -> None:
        self.client.incr(f"gerrit.event.{key(type)}")

    def event_enqueued(self, pipeline: str, lag: float) -> None:
        self.client.timing(f"zuul.pipeline.{key(pipeline)}.event_enqueue_time", _ms(lag))

    def item_enqueued(self, pipeline: str, project: str, current: int) -> None:
        base = f"zuul.pipeline.{key(pipeline)}"
        self.client.gauge(f"{base}.current_changes", current)
        self.client.incr(f"{base}.total_changes")
        self.client.incr(f"{base}.{project_key(project)}.total_changes")

    def item_dequeued(self, pipeline: str, project: str, current: int, resident: float) -> None:
        base = f"zuul.pipeline.{key(pipeline)}"
        self.client.gauge(f"{base}.current_changes", current)
        self.client.timing(f"{base}.resident_time", _ms(resident))
        self.client.timing(f"{base}.{project_key(project)}.resident_time", _ms(resident))

    def build_started(self, pipeline: str, job: str, label: str, wait: float) -> None:
        base = f"zuul.pipeline.{key(pipeline)}"
        self.client.timing(f"{base}.job.{key(job)}.wait_time", _ms(wait))
        if label:
            self.client.timing(f"{base}.label.{key(label)}.wait_time", _ms(wait))

    def build_finished(
        self, pipeline: str, job: str, result: str, provider: str, label: str, duration: float
    ) -> None:
        base = f"zuul.pipeline.{key(pipeline)}"
        self.client.incr(f"{base}.all_jobs")
        name = f"{base}.job.{key(job)}.{key(result)}"
        self.client.incr(name)
        if result in ("SUCCESS", "FAILURE"):
            self.client.timing(name, _ms(duration))
        if provider:
            self.client.incr(
                f"gatekeeper.provider.{key(provider)}.label.{key(label)}"
                f".job.{key(job)}.{key(result)}"
            )

    def launch(self, provider: str, label: str, result: str, seconds: float) -> None:
        # result is "ready" or "error.<kind>": its dot is Nodepool's.
        outcome = ".".join(key(part) for part in result.split("."))
        for name in (
            f"nodepool.launch.{outcome}",
            f"nodepool.launch.provider.{key(provider)}.{outcome}",
            f"nodepool.launch.image.{key(label)}.{outcome}",
        ):
            self.client.incr(name)
            self.client.timing(name, _ms(seconds))

    def gerrit_reconnect(self) -> None:
        self.client.incr("gatekeeper.gerrit.reconnects")

    def catch_up(self, recovered: int) -> None:
        self.client.incr("gatekeeper.gerrit.catchup.runs")
        if recovered:
            self.client.incr("gatekeeper.gerrit.catchup.recovered", recovered)

    def report(self, kind: str, outcome: str, seconds: float) -> None:
        self.client.timing(f"gatekeeper.report.{key(kind)}.{key(outcome)}", _ms(seconds))

    # -- levels -------------------------------------------------------------
    def send_levels(self) -> None:
        """Nodes by state (in all, per label, per provider), max-servers and
        Gearman's queue, as Nodepool's and gear's gauges."""
        census = self.census
        if census is None:
            return
        gauges: dict[str, int] = {}
        for (label, provider, state), n in census.nodes().items():
            s = key(state.lower())
            for name in (
                f"nodepool.nodes.{s}",
                f"nodepool.label.{key(label)}.nodes.{s}",
                f"nodepool.provider.{key(provider)}.nodes.{s}",
            ):
                gauges[name] = gauges.get(name, 0) + n
        for name in self._last_levels - set(gauges):
            gauges[name] = 0
        self._last_levels = {n for n, v in gauges.items() if v}
        for provider, n in census.max_servers.items():
            gauges[f"nodepool.provider.{key(provider)}.max_servers"] = n
        queue = census.gearman()
        if queue is not None:
            gauges["zuul.geard.queue.total"] = queue.total
            gauges["zuul.geard.queue.running"] = queue.running
            gauges["zuul.geard.queue.waiting"] = queue.waiting
        for name, value in sorted(gauges.items()):
            self.client.gauge(name, value)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="statsd-levels", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; called last, when nothing reports any more (the
        client's socket is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_levels()
            except Exception:
                log.exception("statsd: sending the levels failed")
            self._stop.wait(self.interval)
