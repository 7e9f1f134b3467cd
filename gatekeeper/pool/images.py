"""Image rows, and the builder that makes a label's image daily on each provider.

Per provider and label, the newest READY image is *current* (new nodes boot
from it) and the ones before it are kept up to ``image-update.keep`` in all;
older ones go to DELETE and the reaper deletes them. A failed build leaves
the current image in use and records FAILED with the reason; each provider's
builds run on their own, so one cloud failing does not hold up another.
"""

from __future__ import annotations

import builtins
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import delete, select, update

from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import Image, ImageState
from gatekeeper.errors import GatekeeperError, PoolError
from gatekeeper.pool.providers.base import Provider

log = logging.getLogger(__name__)

# A failed image build is tried again after this long (or the interval, if shorter).
FAILED_RETRY = 3600.0


def image_name(label: str, provider: str, when: float) -> str:
    """``<label>-<provider>-<UTC yyyymmddThhmmss>-<random>``: sorts by day, never collides."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
    return f"{label}-{provider}-{stamp}-{uuid.uuid4().hex[:6]}"


class ImageStore:
    """The images table. Thread-safe: each call is its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start_build(self, provider: str, label: str, now: float | None = None) -> Image:
        """Record a BUILDING image.

        :raises PoolError: that name is taken.
        """
        now = time.time() if now is None else now
        name = image_name(label, provider, now)
        with self.db.session() as session:
            if session.scalars(select(Image.id).where(Image.name == name)).first() is not None:
                raise PoolError(f"image {name} already exists")
            image = Image(
                name=name,
                provider=provider,
                label=label,
                state=ImageState.BUILDING,
                state_time=now,
                created_at=now,
                external_id="",
                comment="",
            )
            session.add(image)
            session.flush()
            session.expunge(image)
        return image

    def finish(self, name: str, external_id: str) -> None:
        self._set(name, ImageState.READY, external_id=external_id)

    def fail(self, name: str, reason: str) -> None:
        self._set(name, ImageState.FAILED, comment=reason[:4000])

    def set_state(self, name: str, state: str, comment: str = "") -> None:
        self._set(name, state, comment=comment)

    def _set(self, name: str, state: str, **values: str) -> None:
        if state not in ImageState.ALL:
            raise PoolError(f"unknown image state {state!r}")
        with self.db.session() as session:
            session.execute(
                update(Image)
                .where(Image.name == name)
                .values(state=state, state_time=time.time(), **values)
            )

    def remove(self, name: str) -> None:
        with self.db.session() as session:
            session.execute(delete(Image).where(Image.name == name))

    def list(
        self, provider: str | None = None, label: str | None = None, state: str | None = None
    ) -> list[Image]:
        query = select(Image).order_by(Image.created_at, Image.id)
        if provider is not None:
            query = query.where(Image.provider == provider)
        if label is not None:
            query = query.where(Image.label == label)
        if state is not None:
            query = query.where(Image.state == state)
        with self.db.session() as session:
            return list(session.scalars(query))

    def current(self, provider: str, label: str) -> Image | None:
        """The newest READY image: what new nodes boot from."""
        ready = self.list(provider, label, ImageState.READY)
        return ready[-1] if ready else None

    def retire_old(self, provider: str, label: str, keep: int) -> builtins.list[str]:
        """READY images beyond the newest ``keep`` go to DELETE; their names."""
        ready = self.list(provider, label, ImageState.READY)
        old = ready[: max(0, len(ready) - keep)]
        retired = []
        with self.db.session() as session:
            for image in old:
                if rowcount(
                    session.execute(
                        update(Image)
                        .where(Image.id == image.id, Image.state == ImageState.READY)
                        .values(state=ImageState.DELETE, state_time=time.time())
                    )
                ):
                    retired.append(image.name)
        return retired


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
            external_id = provider.build_image(label, image.name, say)
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
