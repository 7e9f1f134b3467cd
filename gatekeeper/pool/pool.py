"""The pool loop: keep nodes ready, launch for waiting workers, clean up.

One round (``run_once``):

1. nodes in DELETE are deleted by their provider and their rows removed;
   a reusable (static) node is cleaned and offered again as READY;
2. HOLD nodes whose hold has run out go to DELETE (next round deletes them);
3. per label, ``waiting requests + min-ready - (READY + BUILDING)`` nodes are
   launched on the label's providers, each within its max-servers; launches
   run on a small thread pool so a slow boot does not stall the round, and a
   failed launch only removes its row: the next round tries again.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from gatekeeper.config.site import LabelConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import NodeState
from gatekeeper.errors import GatekeeperError
from gatekeeper.pool.nodes import NodeStore
from gatekeeper.pool.providers.base import Provider

log = logging.getLogger(__name__)

LAUNCH_THREADS = 4
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def local_node_name(label: str, provider: str) -> str:
    """``<label>-<provider>-<id>``: unique, and safe as a file or host name."""
    return f"{_UNSAFE.sub('_', label)}-{_UNSAFE.sub('_', provider)}-{uuid.uuid4().hex[:10]}"


class Pool:
    """Keeps min-ready nodes per label within max-servers; launches for
    waiting workers; deletes used nodes; expires holds. Owns its thread
    (``pool``) and a few launcher threads (``pool-launch``).
    """

    def __init__(
        self,
        site: SiteConfig,
        db: Database,
        providers: dict[str, Provider],
        labels: list[LabelConfig],
    ) -> None:
        self.site = site
        self.nodes = NodeStore(db)
        self.providers = providers
        self.labels = labels
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Node names whose launch is running in this process.
        self._launching: set[str] = set()
        self._idle = threading.Event()
        self._idle.set()

    # -- thread ------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._forget_interrupted_launches()
        self._thread = threading.Thread(target=self._run, name="pool", daemon=True)
        self._thread.start()
        log.info("pool started: %d providers, %d labels", len(self.providers), len(self.labels))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
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

    # -- one round ---------------------------------------------------------

    def run_once(self) -> None:
        """One round; deletes synchronously, launches in the background."""
        self._delete_nodes()
        for name in self.nodes.expire_holds():
            log.info("node %s hold expired: DELETE", name)
        self._delete_nodes()
        self._launch_for_demand()

    def _delete_nodes(self) -> None:
        for node in self.nodes.list(state=NodeState.DELETE):
            provider = self.providers.get(node.provider)
            if provider is None:
                log.warning("node %s: provider %s is not configured", node.name, node.provider)
                continue
            try:
                provider.delete(node)
            except GatekeeperError as exc:
                log.warning(
                    "node %s (%s) delete failed, will retry: %s", node.name, node.label, exc
                )
                continue
            if provider.reusable_nodes:
                self.nodes.set_state(node.name, NodeState.READY, comment="cleaned")
                log.info("node %s (%s) READY on %s", node.name, node.label, node.provider)
            else:
                self.nodes.remove(node.name)
                log.info("node %s (%s) deleted from %s", node.name, node.label, node.provider)

    def _launch_for_demand(self) -> None:
        counts = self.nodes.counts()
        pending = self.nodes.pending_requests()
        labels = list(self.labels)
        configured = {label.name for label in labels}
        # A worker may wait for a label the site file does not list (the
        # zero-config default lists none): launch for it anywhere, keeping
        # none ready.
        labels += [
            LabelConfig.model_validate({"name": name, "min-ready": 0})
            for name in sorted(pending)
            if name not in configured
        ]
        for label in labels:
            have = counts.get((label.name, NodeState.READY), 0) + counts.get(
                (label.name, NodeState.BUILDING), 0
            )
            demand = pending.get(label.name, 0) + label.min_ready - have
            for _ in range(demand):
                if not self._launch_one(label):
                    log.debug("label %s: no capacity for %d more nodes", label.name, demand)
                    break

    def _label_providers(self, label: LabelConfig) -> list[Provider]:
        names = label.providers or list(self.providers)
        return [self.providers[n] for n in names if n in self.providers]

    def _launch_one(self, label: LabelConfig) -> bool:
        """Start one launch for ``label``; False if no provider has room."""
        for provider in self._label_providers(label):
            if self.nodes.provider_usage(provider.name) >= provider.config.max_servers:
                continue
            fixed = provider.fixed_names(label.name)
            if fixed is None:
                name = local_node_name(label.name, provider.name)
            else:
                taken = {n.name for n in self.nodes.list(provider=provider.name)}
                free = [n for n in fixed if n not in taken]
                if not free:
                    continue
                name = free[0]
            try:
                self.nodes.add(name, label.name, provider.name, NodeState.BUILDING)
            except GatekeeperError as exc:
                # Another pool process took the name first; try elsewhere.
                log.debug("node %s not added: %s", name, exc)
                continue
            log.info("node %s (%s) BUILDING on %s", name, label.name, provider.name)
            self._submit(provider, name, label.name)
            return True
        return False

    def _submit(self, provider: Provider, name: str, label: str) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=LAUNCH_THREADS, thread_name_prefix="pool-launch"
                )
            self._launching.add(name)
            self._idle.clear()
            self._executor.submit(self._launch, provider, name, label)

    def _launch(self, provider: Provider, name: str, label: str) -> None:
        try:
            launched = provider.launch(name, label)
            self.nodes.set_ready(name, launched)
            log.info("node %s (%s) READY on %s", name, label, provider.name)
        except Exception as exc:
            log.warning("node %s (%s) launch on %s failed: %s", name, label, provider.name, exc)
            self._discard(provider, name)
        finally:
            with self._lock:
                self._launching.discard(name)
                if not self._launching:
                    self._idle.set()

    def _discard(self, provider: Provider, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None and not provider.reusable_nodes:
            try:
                provider.delete(node)
            except Exception as exc:
                log.warning("node %s: cleaning up a failed launch failed: %s", name, exc)
        self.nodes.remove(name)

    def _forget_interrupted_launches(self) -> None:
        # A BUILDING row at start-up is a launch a previous pool process did
        # not finish; delete what it may have left and launch afresh.
        for node in self.nodes.list(state=NodeState.BUILDING):
            if node.provider in self.providers and node.name not in self._launching:
                log.info("node %s (%s) was BUILDING at start-up: DELETE", node.name, node.label)
                self.nodes.set_state(node.name, NodeState.DELETE, comment="launch interrupted")

    def launching(self) -> set[str]:
        with self._lock:
            return set(self._launching)
