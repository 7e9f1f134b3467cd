"""The reaper: what is old, stuck or leaked goes.

Run by the pool thread hourly (``reap.interval``) and once at start:

- READY nodes older than ``max-ready-age`` and BUILDING nodes older than
  their provider's ``launch-timeout`` or ``max-building-age``, whichever is
  shorter (unless this process is still launching them), go to DELETE;
- servers a provider holds for this pool that no row accounts for (leaks:
  a crash between create and record, a retried launch whose first server
  would not die, a delete that silently failed) are deleted;
- rows whose server is gone go to DELETE (the delete then finds nothing and
  the row goes);
- images beyond current and previous (DELETE) are deleted, and their rows
  removed once the image is seen gone; FAILED image rows but the newest go;
- build logs older than ``logs.keep-days`` go (:mod:`gatekeeper.pool.retention`).

Deleting nodes in DELETE, and confirming those in DELETING, is done every
pool round, not only here (see ``Pool``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.errors import GatekeeperError
from gatekeeper.model.node import ImageState, NodeState
from gatekeeper.pool.providers.base import Provider, Reapable, image_builder
from gatekeeper.pool.retention import prune_logs

log = logging.getLogger(__name__)

DEFAULT_LAUNCH_TIMEOUT = 3600.0


class Reaper:
    """One reaping pass at a time, from the pool thread (or the CLI)."""

    def __init__(
        self,
        site: SiteConfig,
        nodes: NodeStore,
        images: ImageStore,
        providers: dict[str, Provider],
        launching: Callable[[], set[str]] = set,
        building_images: Callable[[], set[str]] = set,
    ) -> None:
        self.site = site
        self.nodes = nodes
        self.images = images
        self.providers = providers
        self.launching = launching
        self.building_images = building_images

    def run_once(self, now: float | None = None) -> dict[str, int]:
        """One pass; counts of what it did, by kind."""
        now = time.time() if now is None else now
        done = {"old-ready": 0, "stuck-building": 0, "leaked": 0, "gone": 0, "images": 0}
        done["old-ready"] = self._old_ready(now)
        done["stuck-building"] = self._stuck_building(now)
        for provider in self.providers.values():
            try:
                leaked, gone = self._leaks(provider)
            except GatekeeperError as exc:
                log.warning("reaper: cannot list %s: %s", provider.name, exc)
                continue
            done["leaked"] += leaked
            done["gone"] += gone
        done["images"] = self._images(now)
        if self.site.log_root is not None and self.site.logs.keep_days > 0:
            pruned = prune_logs(self.site.log_root, self.site.logs.keep_days, now)
            done["logs"] = pruned.files + pruned.directories
        if any(done.values()):
            log.info("reaper: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        return done

    def _old_ready(self, now: float) -> int:
        limit = self.site.reap.max_ready_age
        n = 0
        for node in self.nodes.list(state=NodeState.READY):
            if now - node.state_time > limit and self.nodes.change_state(
                node.name, NodeState.READY, NodeState.DELETE, "READY too long"
            ):
                log.info("node %s READY for %.0fs: DELETE", node.name, now - node.state_time)
                n += 1
        return n

    def _stuck_building(self, now: float) -> int:
        launching = self.launching()
        n = 0
        for node in self.nodes.list(state=NodeState.BUILDING):
            provider = self.providers.get(node.provider)
            limit = provider.config.launch_timeout if provider else DEFAULT_LAUNCH_TIMEOUT
            if self.site.reap.max_building_age is not None:
                limit = min(limit, self.site.reap.max_building_age)
            if node.name in launching or now - node.created_at <= limit:
                continue
            if self.nodes.change_state(
                node.name, NodeState.BUILDING, NodeState.DELETE, "launch timed out"
            ):
                log.info("node %s BUILDING for %.0fs: DELETE", node.name, now - node.created_at)
                n += 1
        return n

    def _leaks(self, provider: Provider) -> tuple[int, int]:
        if not isinstance(provider, Reapable):
            # Hosts it does not own, or nothing tagged: nothing to leak.
            return 0, 0
        # List the cloud first, then read the rows: a server made after the
        # listing is not in it, and a row gone after it means its node is.
        tagged = provider.list_tagged()
        rows = {node.name: node for node in self.nodes.list(provider=provider.name)}
        building_images = {
            i.name for i in self.images.list(provider.name, state=ImageState.BUILDING)
        }
        leaked = 0
        for item in tagged:
            if item.node:
                row = rows.get(item.node)
                ours = row is not None and (
                    not row.external_id or row.external_id == item.external_id
                )
            elif item.image:
                ours = item.image in building_images
            else:
                continue
            if ours:
                continue
            log.warning(
                "reaper: %s on %s (%s) has no row: deleting",
                item.external_id,
                provider.name,
                item.node or f"image {item.image}",
            )
            try:
                provider.delete_external(item.external_id)
            except GatekeeperError as exc:
                log.warning("reaper: deleting leaked %s failed: %s", item.external_id, exc)
                continue
            leaked += 1
        present = {item.external_id for item in tagged}
        gone = 0
        for row in rows.values():
            if row.state not in (NodeState.READY, NodeState.USED, NodeState.HOLD):
                continue
            if row.external_id and row.external_id not in present:
                if self.nodes.change_state(row.name, row.state, NodeState.DELETE, "server gone"):
                    log.warning("node %s: its server is gone: DELETE", row.name)
                    gone += 1
        return leaked, gone

    def _images(self, now: float) -> int:
        n = 0
        building = self.building_images()
        for image in self.images.list():
            provider = self.providers.get(image.provider)
            if image.state == ImageState.BUILDING:
                timeout = self.site.image_update.timeout
                if image.name not in building and now - image.created_at > timeout:
                    self.images.fail(image.name, "build did not finish")
                continue
            if image.state != ImageState.DELETE or provider is None:
                continue
            try:
                if image.external_id:
                    images = image_builder(provider)
                    images.delete_image(image.external_id)
                    if images.image_exists(image.external_id):
                        continue
                self.images.remove(image.name)
                log.info("image %s deleted from %s", image.name, image.provider)
                n += 1
            except GatekeeperError as exc:
                log.warning("image %s: delete failed: %s", image.name, exc)
        # Keep only the newest failure per provider and label (it says why).
        newest_failed: dict[tuple[str, str], str] = {}
        for image in self.images.list(state=ImageState.FAILED):
            key = (image.provider, image.label)
            if key in newest_failed:
                self.images.remove(newest_failed[key])
            newest_failed[key] = image.name
        return n
