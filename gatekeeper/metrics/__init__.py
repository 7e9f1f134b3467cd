"""Where the metrics go: Prometheus (a registry the web serves at
``/metrics``) and statsd (Zuul v2.5's and Nodepool's names, so dashboards
built for them work). Both implement :class:`gatekeeper.model.metrics.Metrics`,
the seam every emitter calls; the app builds them for its site
(:class:`SiteMetrics`)."""

from __future__ import annotations

from gatekeeper.config.site import SiteConfig
from gatekeeper.metrics.prometheus import PrometheusMetrics
from gatekeeper.metrics.statsd import StatsdMetrics
from gatekeeper.model.metrics import Census, Metrics, Tee


class SiteMetrics:
    """A process's metrics: Prometheus always (its own registry, not the
    global default, so several apps in one process keep apart), statsd when
    the site file has a ``statsd`` section. ``metrics`` is what components
    report to; ``prometheus.registry`` is what the web serves."""

    def __init__(self, site: SiteConfig, census: Census) -> None:
        self.prometheus = PrometheusMetrics(census)
        self.statsd: StatsdMetrics | None = None
        self.metrics: Metrics = self.prometheus
        if site.statsd is not None:
            config = site.statsd
            self.statsd = StatsdMetrics(
                config.host, config.port, config.prefix, census, config.interval
            )
            self.metrics = Tee(self.prometheus, self.statsd)

    def start(self) -> None:
        if self.statsd is not None:
            self.statsd.start()

    def stop(self) -> None:
        if self.statsd is not None:
            self.statsd.stop()


__all__ = ["PrometheusMetrics", "SiteMetrics", "StatsdMetrics"]
