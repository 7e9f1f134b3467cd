"""The pool loop: keep nodes ready, launch for waiting workers, clean up.

One round (``run_once``):

1. HOLD nodes whose hold has run out go to DELETE, and so do the oldest
   holds made for failed builds of a label holding more than its
   ``hold-max`` (a lowered cap; the worker keeps it when it holds a node);
2. the reaper runs at start and every ``reap.interval`` (see ``reaper``);
3. images that are due (``image-update.interval``) are built, one thread per
   build, so a slow or failing cloud holds up nothing else;
4. per label, ``waiting requests + min-ready - (READY + BUILDING)`` nodes are
   placed across the label's providers (``allocation``) within each one's
   free capacity (max-servers, the cloud's quota) and launched on a thread
   pool. A provider whose launches keep failing is backed off
   (exponentially, ``pool.backoff`` to ``pool.backoff-max``) and the others
   take its share;

   Held nodes are real servers, so they count against max-servers (and
   the cloud's quota) like any other; ``hold-max`` keeps them few. When a
   label's waiting builds still find no room on a provider that is full,
   that provider's oldest holds made for failed builds are released (and
   logged) so the builds get nodes: a waiting build outranks a kept
   failure. A shortfall in ``min-ready`` alone releases no hold: it appears
   whenever a node is claimed, so holds would last only until the pool got
   busy, when they are most needed;
5. nodes in DELETE are deleted by their provider; a delete is trusted only
   when a later look finds the machine gone (until then the node is
   DELETING, and the delete is sent again after ``reap.delete-retry``); a
   reusable (static) node is cleaned and offered again as READY.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gatekeeper.config.site import LabelConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.errors import GatekeeperError
from gatekeeper.insights.providers import ProviderWatch
from gatekeeper.model.metrics import NO_METRICS, Metrics
from gatekeeper.model.node import ImageState, NodeState
from gatekeeper.model.results import NodeWait
from gatekeeper.pool.allocation import allocate
from gatekeeper.pool.images import ImageBuilder
from gatekeeper.pool.providers.base import (
    BuildsImages,
    HasQuota,
    HoldsLaunches,
    Provider,
    ReusableHosts,
    Stoppable,
)
from gatekeeper.pool.providers.cloud import QuotaError
from gatekeeper.pool.reaper import Reaper

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Consecutive failed launches before a provider is backed off (a quota
# refusal backs it off at once).
BACKOFF_AFTER = 2
# How often the pool looks whether an image is due.
IMAGE_CHECK_INTERVAL = 30.0


def local_node_name(label: str, provider: str) -> str:
    """``<label>-<provider>-<id>``: unique, and safe as a file or host name."""
    return f"{_UNSAFE.sub('_', label)}-{_UNSAFE.sub('_', provider)}-{uuid.uuid4().hex[:10]}"


def label_providers(label: LabelConfig, providers: Mapping[str, Provider]) -> list[Provider]:
    """The providers that can launch ``label``: those it names (else all)
    that serve it."""
    # A layout's job may name a label that some clouds have no image for
    # (or none has): launching it there would only fail and back off the
    # provider for the labels it does serve.
    names = label.providers or list(providers)
    return [providers[n] for n in names if n in providers and providers[n].serves(label.name)]


def describe_wait(
    nodes: NodeStore,
    providers: Mapping[str, Provider],
    label: LabelConfig,
    waited: float,
    backing_off: Collection[str] = (),
) -> NodeWait:
    """What the pool has for ``label`` now, for a build that waited ``waited``
    seconds in vain (``backing_off``: the providers the pool has backed off)."""
    counts = nodes.counts()
    serving = label_providers(label, providers)

    def count(state: NodeState) -> int:
        return counts.get((label.name, state), 0)

    return NodeWait(
        label=label.name,
        waited=waited,
        ready=count(NodeState.READY),
        building=count(NodeState.BUILDING),
        held=count(NodeState.HOLD),
        in_use=count(NodeState.USED),
        capacity=sum(p.config.max_servers for p in serving),
        occupied=sum(nodes.provider_usage(p.name, True) for p in serving),
        providers=[p.name for p in serving],
        backing_off=sorted(p.name for p in serving if p.name in backing_off),
    )


@dataclass
class ProviderHealth:
    """Launch outcomes of one provider, for backoff. Guarded by Pool._lock."""

    failures: int = 0
    backoff_until: float = 0.0
    launched: int = 0
    failed: int = 0


class Pool:
    """Keeps min-ready nodes per label within max-servers and quota; launches
    for waiting workers; deletes used nodes; expires holds; reaps; builds
    images. Owns its thread (``pool``), launcher threads (``pool-launch``)
    and image-build threads (``pool-image``).
    """

    def __init__(
        self,
        site: SiteConfig,
        db: Database,
        providers: dict[str, Provider],
        labels: list[LabelConfig],
        metrics: Metrics = NO_METRICS,
        watch: ProviderWatch | None = None,
    ) -> None:
        self.site = site
        self.metrics = metrics
        #: Which providers are significantly worse (``deprioritize-failing``);
        #: asked each round, it reads the builds only every ``refresh``.
        self.watch = watch
        self.nodes = NodeStore(db)
        self.images = ImageStore(db)
        self.builder = ImageBuilder(self.images, site.image_update.keep)
        self.providers = providers
        self.labels = labels
        self.health = {name: ProviderHealth() for name in providers}
        self.reaper = Reaper(
            site, self.nodes, self.images, providers, self.launching, self.building_images
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._image_threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        # Node names whose launch is running in this process.
        self._launching: set[str] = set()
        self._idle = threading.Event()
        self._idle.set()
        self._rounds = 0
        self._next_reap = 0.0
        self._next_image_check = 0.0
        # Labels already warned about having no provider that serves them.
        self._unserved: set[str] = set()
        # Per deprioritize-failing label, the flagged providers last logged as avoided.
        self._avoided: dict[str, frozenset[str]] = {}
        # Those of them launching on a flagged provider again (the rest back off).
        self._fallen_back: set[str] = set()

    # -- thread ------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for provider in self.providers.values():
            if isinstance(provider, Stoppable):
                provider.resume()
        self._forget_interrupted_work()
        self._next_reap = 0.0  # reap at start
        self._thread = threading.Thread(target=self._run, name="pool", daemon=True)
        self._thread.start()
        log.info("pool started: %d providers, %d labels", len(self.providers), len(self.labels))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for provider in self.providers.values():
            if isinstance(provider, Stoppable):
                provider.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            executor, self._executor = self._executor, None
            image_threads = list(self._image_threads.values())
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        for thread in image_threads:
            thread.join()
        with self._lock:
            # Cancelled launches never ran; their BUILDING rows are cleaned
            # up by the next start().
            self._launching.clear()
            self._idle.set()
        log.info("pool stopped")

    def wake(self) -> None:
        """Run a round now instead of at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("pool round failed")
            self._wake.wait(self.site.pool.interval)
            self._wake.clear()

    def wait_for_launches(self, timeout: float | None = None) -> bool:
        """Wait until no launch is running (for tests and clean shutdowns)."""
        return self._idle.wait(timeout)

    def wait_for_images(self, timeout: float | None = None) -> bool:
        """Wait until no image build is running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._image_threads.values())
            if not threads:
                return True
            for thread in threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
                if thread.is_alive():
                    return False

    # -- one round ---------------------------------------------------------

    def run_once(self) -> None:
        """One round; deletes synchronously, launches and builds in the background."""
        now = time.time()
        for name in self.nodes.expire_holds():
            log.info("node %s hold expired: DELETE", name)
        for name in self.nodes.enforce_hold_max(self.site.hold_max):
            log.info("node %s hold released: its label holds more than hold-max", name)
        if now >= self._next_reap:
            self._next_reap = now + self.site.reap.interval
            self.reaper.run_once(now)
        if now >= self._next_image_check and not self._stop.is_set():
            self._next_image_check = now + IMAGE_CHECK_INTERVAL
            self._build_due_images(now)
        # Launch before deleting: a DELETE row takes no capacity, and deletes
        # through a slow or failing cloud's rate limit must not hold up the
        # launches that replace its nodes elsewhere.
        if self.watch is not None:
            # The pool's thread keeps the report fresh, so a provider that
            # turns worse is logged even where no label deprioritizes it.
            self.watch.report()
            self._deprioritize_failing()
        self._launch_for_demand()
        self._delete_nodes()
        self._rounds += 1

    def _delete_nodes(self) -> None:
        retry = self.site.reap.delete_retry
        now = time.time()
        for node in self.nodes.list(state=NodeState.DELETE) + self.nodes.list(
            state=NodeState.DELETING
        ):
            provider = self.providers.get(node.provider)
            if provider is None:
                log.warning("node %s: provider %s is not configured", node.name, node.provider)
                continue
            try:
                if node.state == NodeState.DELETE or now - node.state_time >= retry:
                    provider.delete(node)
                    if node.state == NodeState.DELETING:
                        log.info("node %s still there: delete sent again", node.name)
                        self.nodes.set_state(node.name, NodeState.DELETING)
                if isinstance(provider, ReusableHosts):
                    self.nodes.set_state(node.name, NodeState.READY, comment="cleaned")
                    log.info("node %s (%s) READY on %s", node.name, node.label, node.provider)
                elif provider.exists(node):
                    if node.state == NodeState.DELETE:
                        self.nodes.change_state(node.name, NodeState.DELETE, NodeState.DELETING)
                else:
                    self.nodes.remove(node.name)
                    log.info("node %s (%s) deleted from %s", node.name, node.label, node.provider)
            except GatekeeperError as exc:
                log.warning(
                    "node %s (%s) delete failed, will retry: %s", node.name, node.label, exc
                )

    # -- images ------------------------------------------------------------

    def _build_due_images(self, now: float) -> None:
        interval = self.site.image_update.interval
        for provider in self.providers.values():
            if not isinstance(provider, BuildsImages):
                continue
            for label in self._all_labels():
                if not provider.builds_images(label.name):
                    continue
                key = f"{provider.name}/{label.name}"
                with self._lock:
                    if key in self._image_threads:
                        continue
                try:
                    due = self.builder.due(provider, label.name, interval, now)
                except GatekeeperError as exc:
                    log.warning("image check %s failed: %s", key, exc)
                    continue
                if due:
                    self.start_image_build(provider, label.name)

    def start_image_build(self, provider: Provider, label: str) -> bool:
        """Build an image of ``label`` on ``provider`` in its own thread;
        False if one is already building here."""
        key = f"{provider.name}/{label}"

        def build() -> None:
            try:
                self.builder.build(provider, label)
            except Exception:
                log.exception("image build %s failed", key)
            finally:
                with self._lock:
                    self._image_threads.pop(key, None)
                self.wake()

        with self._lock:
            if key in self._image_threads:
                return False
            thread = threading.Thread(target=build, name=f"pool-image-{key}", daemon=True)
            self._image_threads[key] = thread
        thread.start()
        return True

    def building_images(self) -> set[str]:
        """Names of the images this process is building."""
        names = set()
        for image in self.images.list(state=ImageState.BUILDING):
            with self._lock:
                if f"{image.provider}/{image.label}" in self._image_threads:
                    names.add(image.name)
        return names

    # -- launching ---------------------------------------------------------

    def _all_labels(self) -> list[LabelConfig]:
        labels = list(self.labels)
        configured = {label.name for label in labels}
        # A worker may wait for a label the site file does not list (the
        # zero-config default lists none): launch for it anywhere, keeping
        # none ready.
        pending = self.nodes.pending_requests()
        labels += [
            LabelConfig.model_validate({"name": name, "min-ready": 0})
            for name in sorted(pending)
            if name not in configured
        ]
        return labels

    def demand(self) -> dict[str, int]:
        """Per label: waiting requests + min-ready - (READY + BUILDING)."""
        counts = self.nodes.counts()
        pending = self.nodes.pending_requests()
        out = {}
        for label in self._all_labels():
            have = counts.get((label.name, NodeState.READY), 0) + counts.get(
                (label.name, NodeState.BUILDING), 0
            )
            out[label.name] = pending.get(label.name, 0) + label.min_ready - have
        return out

    def _label_providers(self, label: LabelConfig) -> list[Provider]:
        return label_providers(label, self.providers)

    def describe_wait(self, label: str, waited: float) -> NodeWait:
        """What this pool has for ``label`` now (see :func:`describe_wait`),
        with the providers it is backing off."""
        config = next((lb for lb in self._all_labels() if lb.name == label), None)
        if config is None:
            config = LabelConfig.model_validate({"name": label, "min-ready": 0})
        now = time.time()
        with self._lock:
            backing_off = {n for n, h in self.health.items() if now < h.backoff_until}
        return describe_wait(self.nodes, self.providers, config, waited, backing_off)

    def backing_off(self) -> dict[str, float]:
        """Provider -> until when (epoch) its launches are held back after
        failures, for the providers backed off now."""
        now = time.time()
        with self._lock:
            return {n: h.backoff_until for n, h in self.health.items() if now < h.backoff_until}

    def capacity(self, provider: Provider, ask_quota: bool = True) -> int:
        """Nodes ``provider`` can take now: max-servers less what it holds,
        less any shortfall in the cloud's quota; 0 while backed off."""
        with self._lock:
            health = self.health.setdefault(provider.name, ProviderHealth())
            if time.time() < health.backoff_until:
                return 0
        # Launches run before this round's deletes: a DELETE node's machine
        # is still there (a reusable provider's is about to be READY again).
        free = provider.config.max_servers - self.nodes.provider_usage(provider.name, True)
        if free > 0 and ask_quota and isinstance(provider, HasQuota):
            try:
                quota = provider.quota_free()
            except GatekeeperError as exc:
                log.warning("provider %s: cannot read quota: %s", provider.name, exc)
                return 0
            if quota is not None:
                free = min(free, quota)
        return max(0, free)

    def _launch_for_demand(self) -> None:
        if self._stop.is_set():
            return
        demand = {k: v for k, v in self.demand().items() if v > 0}
        if not demand:
            return
        labels = {label.name: label for label in self._all_labels()}
        label_providers = {
            name: [p.name for p in self._label_providers(labels[name])] for name in demand
        }
        for name, serving in label_providers.items():
            if not serving and name not in self._unserved:
                self._unserved.add(name)
                log.warning(
                    "label %s: no configured provider can launch it (those it names are "
                    "missing, or have no 'images' entry for it)",
                    name,
                )
        wanted = {p for names in label_providers.values() for p in names}
        free = {name: self.capacity(self.providers[name]) for name in sorted(wanted)}
        plan = self._plan(demand, labels, label_providers, free)
        batch: list[tuple[str, str, str]] = []
        for (label, provider_name), n in sorted(plan.items()):
            provider = self.providers[provider_name]
            if isinstance(provider, ReusableHosts):
                for _ in range(n):
                    if not self._launch_one(provider, label):
                        break
                continue
            batch += [
                (local_node_name(label, provider_name), label, provider_name) for _ in range(n)
            ]
        if batch:
            self.nodes.add_building(batch)
            for name, label, provider_name in batch:
                log.info("node %s (%s) BUILDING on %s", name, label, provider_name)
                self._submit(self.providers[provider_name], name, label)
        for label, n in demand.items():
            placed = sum(v for (lb, _), v in plan.items() if lb == label)
            if placed < n:
                log.debug("label %s: no capacity for %d more nodes", label, n - placed)
        self._release_holds_for_waiting(demand, label_providers, plan, free)

    def _plan(
        self,
        demand: Mapping[str, int],
        labels: Mapping[str, LabelConfig],
        label_providers: Mapping[str, list[str]],
        free: Mapping[str, int],
    ) -> dict[tuple[str, str], int]:
        """:func:`allocate`, keeping a ``deprioritize-failing`` label off the
        providers flagged significantly worse while another of its providers
        can launch (is not backed off): its builds wait for a node there
        rather than fail on the flagged one."""
        placed = dict(label_providers)
        for name, bad in self._avoided.items():
            if not bad or name not in placed or not labels[name].deprioritize_failing:
                continue
            others = [p for p in placed[name] if p not in bad]
            if any(not self._backed_off(p) for p in others):
                placed[name] = others
            elif name not in self._fallen_back:
                self._fallen_back.add(name)
                log.warning(
                    "label %s: launching on flagged %s again: its other providers are backing off",
                    name,
                    ", ".join(sorted(bad)),
                )
        for name in [n for n in self._fallen_back if placed.get(n) != label_providers.get(n)]:
            self._fallen_back.discard(name)
        return allocate(demand, placed, free, self._rounds)

    def _deprioritize_failing(self) -> None:
        """Per ``deprioritize-failing`` label, which of its providers are
        flagged significantly worse while another provider serves it too.
        When that changes it is logged, and the label's READY nodes on a
        newly avoided provider are deleted (unclaimed ones only), so that
        builds wait for nodes elsewhere rather than take them."""
        if self.watch is None:
            return
        # Only the site file's labels can ask for it (no extra query per round).
        chosen = [label for label in self.labels if label.deprioritize_failing]
        if not chosen:
            return
        flagged = self.watch.flagged_providers()
        for label in chosen:
            serving = [p.name for p in self._label_providers(label)]
            bad = frozenset(p for p in serving if p in flagged)
            if bad == set(serving):
                bad = frozenset()  # nowhere else to go
            before = self._avoided.get(label.name, frozenset())
            if bad == before:
                continue
            self._avoided[label.name] = bad
            if not bad:
                log.info("label %s: launching on every provider again", label.name)
                continue
            log.warning(
                "label %s: not launching on %s (significantly more failures than the "
                "other providers) while %s can serve it",
                label.name,
                ", ".join(sorted(bad)),
                ", ".join(p for p in serving if p not in bad),
            )
            for provider in sorted(bad - before):
                for node in self.nodes.list(label.name, provider, NodeState.READY):
                    why = f"{provider} is significantly worse for {label.name}"
                    if self.nodes.change_state(node.name, NodeState.READY, NodeState.DELETE, why):
                        log.info("node %s: READY -> DELETE (%s)", node.name, why)

    def _release_holds_for_waiting(
        self,
        demand: Mapping[str, int],
        label_providers: Mapping[str, list[str]],
        plan: Mapping[tuple[str, str], int],
        free: Mapping[str, int],
    ) -> None:
        """Make room for waiting builds that got no node this round by
        releasing the oldest automatic holds on their full providers (see
        the module docstring for why holds count against max-servers)."""
        pending = self.nodes.pending_requests()
        counts = self.nodes.counts()
        for label in sorted(demand):
            have = counts.get((label, NodeState.READY), 0) + counts.get(
                (label, NodeState.BUILDING), 0
            )
            placed = sum(v for (lb, _), v in plan.items() if lb == label)
            # Only the builds that wait, not min-ready's share.
            short = pending.get(label, 0) - have - placed
            for name in label_providers.get(label, []):
                if short <= 0:
                    break
                # Room this round, or backed off (a released hold would not
                # help a provider whose launches fail).
                if free.get(name, 0) > 0 or self._backed_off(name):
                    continue
                # Servers being deleted free their room soon: releasing holds
                # for the same builds again each round would empty them all.
                short -= len(self.nodes.list(provider=name, state=NodeState.DELETE)) + len(
                    self.nodes.list(provider=name, state=NodeState.DELETING)
                )
                if short <= 0:
                    break
                provider = self.providers[name]
                why = f"hold released: {name} was full and a {label} build waited"
                for node in self.nodes.release_oldest_holds(name, short, why):
                    short -= 1
                    log.warning(
                        "provider %s is full (max-servers %d) and %s builds wait: released "
                        "the hold on node %s (%s, build %s), the oldest held for a failed build",
                        name,
                        provider.config.max_servers,
                        label,
                        node.name,
                        node.label,
                        node.build_uuid[:12],
                    )
                    self.wake()

    def _backed_off(self, provider: str) -> bool:
        with self._lock:
            health = self.health.get(provider)
            return health is not None and time.time() < health.backoff_until

    def _launch_one(self, provider: Provider, label: str) -> bool:
        """Start one launch of ``label`` on ``provider``; False if it cannot take it."""
        if not isinstance(provider, ReusableHosts):
            name = local_node_name(label, provider.name)
        else:
            taken = {n.name for n in self.nodes.list(provider=provider.name)}
            free = [n for n in provider.fixed_names(label) if n not in taken]
            if not free:
                return False
            name = free[0]
        try:
            self.nodes.add(name, label, provider.name, NodeState.BUILDING)
        except GatekeeperError as exc:
            # Another pool process took the name first.
            log.debug("node %s not added: %s", name, exc)
            return False
        log.info("node %s (%s) BUILDING on %s", name, label, provider.name)
        self._submit(provider, name, label)
        return True

    def _submit(self, provider: Provider, name: str, label: str) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.site.pool.launch_threads, thread_name_prefix="pool-launch"
                )
            self._launching.add(name)
            self._idle.clear()
            self._executor.submit(self._launch, provider, name, label)

    def _launch(self, provider: Provider, name: str, label: str) -> None:
        began = time.monotonic()
        try:
            image = self.images.current(provider.name, label)
            launched = provider.launch(name, label, image.external_id if image else "")
            self.nodes.set_ready(name, launched, image.name if image else "")
            self._record(provider.name, ok=True)
            self.metrics.launch(provider.name, label, "ready", time.monotonic() - began)
            log.info("node %s (%s) READY on %s", name, label, provider.name)
        except Exception as exc:
            log.warning("node %s (%s) launch on %s failed: %s", name, label, provider.name, exc)
            self._record(provider.name, ok=False, quota=isinstance(exc, QuotaError))
            why = "error.quota" if isinstance(exc, QuotaError) else "error.unknown"
            self.metrics.launch(provider.name, label, why, time.monotonic() - began)
            self._discard(provider, name)
        finally:
            with self._lock:
                self._launching.discard(name)
                if not self._launching:
                    self._idle.set()
            self.wake()

    def _record(self, provider: str, ok: bool, quota: bool = False) -> None:
        cfg = self.site.pool
        with self._lock:
            health = self.health.setdefault(provider, ProviderHealth())
            if ok:
                lifted = health.backoff_until > 0
                health.failures = 0
                health.backoff_until = 0.0
                health.launched += 1
        if ok:
            if lifted:
                self._hold_launches(provider, 0)
            return
        with self._lock:
            health.failed += 1
            health.failures += 1
            if health.failures < BACKOFF_AFTER and not quota:
                return
            delay = min(cfg.backoff * 2 ** max(0, health.failures - BACKOFF_AFTER), cfg.backoff_max)
            health.backoff_until = time.time() + delay
        self._hold_launches(provider, delay)
        log.warning(
            "provider %s: %s; no launches there for %.0fs",
            provider,
            "over quota" if quota else f"{health.failures} failed launch(es) in a row",
            delay,
        )

    def _hold_launches(self, name: str, seconds: float) -> None:
        provider = self.providers.get(name)
        if isinstance(provider, HoldsLaunches):
            provider.hold_launches(seconds)

    def _discard(self, provider: Provider, name: str) -> None:
        if isinstance(provider, ReusableHosts):
            self.nodes.remove(name)
            return
        # The launch deleted what it made; the pool thread's delete pass
        # confirms the machine is gone (or finds it by its tag) before the
        # row goes.
        self.nodes.change_state(name, NodeState.BUILDING, NodeState.DELETE, "launch failed")

    def _forget_interrupted_work(self) -> None:
        # A BUILDING row at start-up is a launch a previous pool process did
        # not finish; delete what it may have left and launch afresh. The
        # same for image builds: the reaper deletes their template servers.
        for node in self.nodes.list(state=NodeState.BUILDING):
            if node.provider in self.providers and node.name not in self._launching:
                log.info("node %s (%s) was BUILDING at start-up: DELETE", node.name, node.label)
                self.nodes.change_state(
                    node.name, NodeState.BUILDING, NodeState.DELETE, "launch interrupted"
                )
        for image in self.images.list(state=ImageState.BUILDING):
            if image.provider in self.providers:
                # Gone without a trace: the reaper deletes its template as a
                # leak, and the image is built again.
                log.info("image %s was BUILDING at start-up: forgotten", image.name)
                self.images.remove(image.name)

    def launching(self) -> set[str]:
        with self._lock:
            return set(self._launching)
