"""The images table: a label's images on each provider, newest READY current.

Per provider and label, the newest READY image is *current* (new nodes boot
from it) and the ones before it are kept up to ``image-update.keep`` in all;
:meth:`ImageStore.retire_old` moves older ones to DELETE for the reaper.
"""

from __future__ import annotations

import builtins
import time
import uuid

from sqlalchemy import delete, select, update

from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import Image
from gatekeeper.errors import PoolError
from gatekeeper.model.node import ImageState


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
        try:
            state = ImageState(state)
        except ValueError:
            raise PoolError(f"unknown image state {state!r}") from None
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

    def built_at(self, name: str) -> float | None:
        """When the image ``name`` was built (None: no such image)."""
        with self.db.session() as session:
            return session.scalars(select(Image.created_at).where(Image.name == name)).first()

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
