"""The builder that makes a label's image daily on each provider.

A failed build leaves the current image in use and records FAILED with the
reason; each provider's builds run on their own, so one cloud failing does
not hold up another. The rows are :class:`gatekeeper.db.images.ImageStore`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gatekeeper.db.images import ImageStore
from gatekeeper.db.tables import Image
from gatekeeper.errors import GatekeeperError
from gatekeeper.model.node import ImageState
from gatekeeper.pool.providers.base import Provider, image_builder

log = logging.getLogger(__name__)

# A failed image build is tried again after this long (or the interval, if shorter).
FAILED_RETRY = 3600.0


class ImageBuilder:
    """Builds one image on one provider. Called from an image-build thread
    (the pool's, or the CLI's); the provider call is the slow part."""

    def __init__(self, store: ImageStore, keep: int) -> None:
        self.store = store
        self.keep = keep

    def build(
        self, provider: Provider, label: str, progress: Callable[[str], None] | None = None
    ) -> Image:
        """Build, record and rotate; the image row as it ends (READY or FAILED)."""
        image = self.store.start_build(provider.name, label)
        say = progress or (lambda line: log.info("image %s: %s", image.name, line))
        try:
            external_id = image_builder(provider).build_image(label, image.name, say)
        except GatekeeperError as exc:
            log.warning("image %s on %s failed: %s", image.name, provider.name, exc)
            self.store.fail(image.name, str(exc))
            image.state, image.comment = ImageState.FAILED, str(exc)
            return image
        self.store.finish(image.name, external_id)
        image.state, image.external_id = ImageState.READY, external_id
        for name in self.store.retire_old(provider.name, label, self.keep):
            log.info("image %s retired: neither current nor previous", name)
        log.info("image %s READY on %s: %s", image.name, provider.name, external_id)
        return image

    def due(self, provider: Provider, label: str, interval: float, now: float) -> bool:
        """Whether (provider, label) needs a new image: none is building, the
        current one is older than ``interval``, and the last failure (if any)
        is older than ``interval`` or an hour, whichever is shorter."""
        images = self.store.list(provider.name, label)
        if any(i.state == ImageState.BUILDING for i in images):
            return False
        ready = [i for i in images if i.state == ImageState.READY]
        failed = [i for i in images if i.state == ImageState.FAILED]
        if ready and now - ready[-1].created_at < interval:
            return False
        return not (failed and now - failed[-1].created_at < min(interval, FAILED_RETRY))
