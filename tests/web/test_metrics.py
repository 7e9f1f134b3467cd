"""Metrics after a real build: the whole daemon against the Gerrit simulator
(the sandbox harness), its Prometheus registry served by the web's
``/metrics`` and parsed with prometheus_client's own parser, and its statsd
datagrams received on a real UDP socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.metrics.prometheus import PrometheusMetrics
from gatekeeper.metrics.statsd import StatsdMetrics
from gatekeeper.model.metrics import Census
from gatekeeper.model.node import NodeState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


class StatsdReceiver:
    """A UDP socket standing where statsd listens; keeps every line it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            with self._lock:
                self.lines += data.decode().splitlines()

    def received(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def statsd_server() -> Iterator[StatsdReceiver]:
    receiver = StatsdReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, statsd_server: StatsdReceiver
) -> Iterator[Sandbox]:
    """A change pushed to openstack/nova and its check build run to the end."""
    box = Sandbox(
        tmp_path_factory.mktemp("metrics") / "sandbox",
        REPO / "layout.yaml",
        extra_site={"statsd": {"host": "127.0.0.1", "port": statsd_server.port, "interval": 0.2}},
    )
    try:
        box.start()
        box.push_change("openstack/nova", "Count me", {"nova/counted.txt": "1\n"})
        box.wait_until_settled()
        yield box
    finally:
        box.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.02)


def scrape(box: Sandbox) -> dict[str, list[Sample]]:
    assert box.app is not None
    ctx = WebContext(
        site=box.site,
        db=box.app.db,
        live=lambda: {"pipelines": []},
        metrics=box.app.metrics.prometheus.registry,
    )
    with TestClient(make_app(ctx)) as web:
        answer = web.get("/metrics")
    assert answer.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


def test_prometheus_counts_the_build_the_event_and_the_nodes(built: Sandbox) -> None:
    families = scrape(built)
    # One build of the check job, on the local provider's devstack-vm node.
    build = {
        "pipeline": "check",
        "job": "gate-devstack-vm",
        "result": "SUCCESS",
        "provider": "local",
        "label": "devstack-vm",
    }
    assert value(families["gatekeeper_builds"], "gatekeeper_builds_total", **build) == 1
    durations = families["gatekeeper_build_duration_seconds"]
    assert (
        value(
            durations,
            "gatekeeper_build_duration_seconds_count",
            job="gate-devstack-vm",
            provider="local",
        )
        == 1
    )
    waits = families["gatekeeper_build_node_wait_seconds"]
    assert value(waits, "gatekeeper_build_node_wait_seconds_count", label="devstack-vm") == 1
    # The push's event, acted on once, and the item it enqueued.
    events = families["gatekeeper_events"]
    assert value(events, "gatekeeper_events_total", type="patchset-created") == 1
    lag = families["gatekeeper_event_lag_seconds"]
    assert value(lag, "gatekeeper_event_lag_seconds_count", pipeline="check") == 1
    resident = families["gatekeeper_item_resident_seconds"]
    assert value(resident, "gatekeeper_item_resident_seconds_count", pipeline="check") == 1
    assert (
        value(families["gatekeeper_pipeline_items"], "gatekeeper_pipeline_items", pipeline="check")
        == 0
    )
    # The pool launched devstack-vm nodes on the local provider, none failed.
    launches = families["gatekeeper_launches"]
    ready = value(
        launches, "gatekeeper_launches_total", provider="local", label="devstack-vm", result="ready"
    )
    assert ready >= 1
    assert not [s for s in families["gatekeeper_launch_errors"] if s.value]
    # Nodes by state, label and provider, read from the database at scrape time.
    nodes = {
        (s.labels["state"], s.labels["label"], s.labels["provider"]): s.value
        for s in families["gatekeeper_nodes"]
    }
    # (The pool may be deleting the build's node meanwhile: READY is steady.)
    assert nodes.get(("READY", "devstack-vm", "local"), 0) >= 1
    assert {state for state, _, _ in nodes} <= {s.value for s in NodeState}
    # The check result reached Gerrit: its report's latency is counted.
    reports = families["gatekeeper_report_seconds"]
    sent = [s for s in reports if s.name.endswith("_count") and s.labels["outcome"] == "sent"]
    assert sum(s.value for s in sent) >= 1
    # The embedded Gearman server has nothing left queued.
    jobs = families["gatekeeper_gearman_jobs"]
    assert value(jobs, "gatekeeper_gearman_jobs", state="waiting") == 0


def test_statsd_receives_zuul_and_nodepool_names(
    built: Sandbox, statsd_server: StatsdReceiver
) -> None:
    assert built.app is not None and built.app.metrics.statsd is not None
    # The levels are sent every 0.2 s; one round after the build is enough.
    wait_until(
        lambda: any(line.startswith("nodepool.nodes.ready:") for line in statsd_server.received())
    )
    lines = statsd_server.received()
    names = {line.split(":", 1)[0] for line in lines}
    assert "gerrit.event.patchset-created" in names
    assert "zuul.pipeline.check.all_jobs" in names
    assert "zuul.pipeline.check.job.gate-devstack-vm.SUCCESS" in names
    assert "zuul.pipeline.check.job.gate-devstack-vm.wait_time" in names
    assert "zuul.pipeline.check.label.devstack-vm.wait_time" in names
    assert "zuul.pipeline.check.current_changes" in names
    assert "zuul.pipeline.check.total_changes" in names
    assert "zuul.pipeline.check.resident_time" in names
    assert "zuul.pipeline.check.openstack.nova.total_changes" in names
    assert "nodepool.launch.provider.local.ready" in names
    assert "nodepool.launch.ready" in names
    assert "nodepool.label.devstack-vm.nodes.ready" in names
    assert "nodepool.provider.local.max_servers" in names
    assert "zuul.geard.queue.waiting" in names
    assert "gatekeeper.provider.local.label.devstack-vm.job.gate-devstack-vm.SUCCESS" in names
    # Each a counter, timer or gauge in statsd's own line format.
    result = [
        line
        for line in lines
        if line.startswith("zuul.pipeline.check.job.gate-devstack-vm.SUCCESS:")
    ]
    assert sorted(line.rsplit("|", 1)[1] for line in result) == ["c", "ms"]
    assert "zuul.pipeline.check.job.gate-devstack-vm.SUCCESS:1|c" in result


def test_statsd_names_cannot_be_forged_by_outside_text() -> None:
    """A job or label name holding statsd's separators (``:``, ``|``, a
    newline) stays one component of one metric."""
    # A receiver of its own: the module's sandbox keeps sending its levels
    # to the shared one, which would mix its lines into these.
    receiver = StatsdReceiver()
    try:
        sink = StatsdMetrics("127.0.0.1", receiver.port, "gk", Census(nodes=dict))
        try:
            sink.build_finished("check", "evil:1|c\nforged.metric", "SUCCESS", "p", "l", 3.0)
            sink.event("x|ms\nzuul.pipeline.gate.all_jobs:99")
        finally:
            sink.stop()
        # all_jobs, the job's counter and timer, the per-provider counter; the event.
        wait_until(lambda: len(receiver.received()) >= 5)
        lines = receiver.received()
    finally:
        receiver.close()
    assert all(line.startswith("gk.") for line in lines), lines
    assert "gk.zuul.pipeline.check.job.evil_1_c_forged_metric.SUCCESS:1|c" in lines
    assert "gk.gerrit.event.x_ms_zuul_pipeline_gate_all_jobs_99:1|c" in lines


def test_a_lost_gerrit_stream_counts_one_reconnect_and_its_catch_up(
    built: Sandbox, statsd_server: StatsdReceiver
) -> None:
    """The simulator cuts the event stream; the listener opens it again and
    the catch-up it asks for runs: one reconnect, one more catch-up."""
    assert built.sim is not None and built.listener is not None and built.app is not None
    catch_up = built.app.catch_up
    assert catch_up is not None
    wait_until(lambda: catch_up.runs >= 1)  # the one asked for by the first opening
    before = scrape(built)
    assert value(before["gatekeeper_gerrit_reconnects"], "gatekeeper_gerrit_reconnects_total") == 0
    runs = value(before["gatekeeper_catchups"], "gatekeeper_catchups_total")
    opened = built.listener.opened
    assert built.sim.cut_streams() >= 1
    wait_until(lambda: built.listener is not None and built.listener.opened > opened, 30)
    wait_until(lambda: catch_up.runs > runs, 30)
    after = scrape(built)
    assert value(after["gatekeeper_gerrit_reconnects"], "gatekeeper_gerrit_reconnects_total") == 1
    assert value(after["gatekeeper_catchups"], "gatekeeper_catchups_total") > runs
    wait_until(lambda: "gatekeeper.gerrit.reconnects:1|c" in statsd_server.received())


def test_launch_errors_and_boots_are_counted_by_provider(tmp_path: Path, db: Database) -> None:
    """The local provider (real directories) fails a launch whose image is
    broken, then boots one once it is mended; both are counted for it."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken").write_text("a file where the image directory should be")
    config = ProviderConfig.model_validate(
        {"name": "local", "driver": "local", "root": tmp_path / "nodes"}
    )
    label = LabelConfig.model_validate({"name": "broken", "min-ready": 1})
    site = SiteConfig(providers=[config], labels=[label])
    prometheus = PrometheusMetrics()
    pool = Pool(site, db, {"local": make_provider(config)}, [label], prometheus)
    try:
        pool.run_once()
        assert pool.wait_for_launches(30)
        get = prometheus.registry.get_sample_value
        assert get("gatekeeper_launch_errors_total", {"provider": "local"}) == 1
        assert (
            get(
                "gatekeeper_launches_total",
                {"provider": "local", "label": "broken", "result": "error.unknown"},
            )
            == 1
        )
        (images / "broken").unlink()
        for _ in range(10):  # a round deletes the broken node, one launches anew
            pool.run_once()
            assert pool.wait_for_launches(30)
            if NodeStore(db).list(state=NodeState.READY):
                break
        labels = {"provider": "local", "label": "broken", "result": "ready"}
        assert get("gatekeeper_launches_total", labels) == 1
        assert get("gatekeeper_node_boot_seconds_count", {"provider": "local"}) == 1
    finally:
        pool.stop()
