"""Job mutexes: builds of jobs that name the same ``mutex:`` never run at once.

Zuul v2.5's ``mutex`` job key, scheduler-wide: the mutex is taken when a
build is dispatched and freed when it completes or is cancelled, whatever
item or pipeline the builds belong to. A job that cannot take its mutex is
not dispatched; it waits (status shows it waiting for the mutex) and is
tried again on the next pass.

Nothing is stored for it: after a restart the restored running builds take
their mutexes again (:meth:`Mutexes.retake`), which is all a mutex is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gatekeeper.model.build import Build

log = logging.getLogger(__name__)

__all__ = ["Mutexes"]


class Mutexes:
    """Who holds each mutex and which jobs wait for one.

    Lives on the scheduler context, which a reconfigure keeps, so every
    pipeline's manager shares it; used only in the scheduler thread.
    A holder that is done or cancelled frees its mutex even if nothing
    released it, so a missed release can delay a waiter by one pass, never
    keep it waiting for good.
    """

    def __init__(self) -> None:
        self._holders: dict[str, Build] = {}
        #: (item uuid, job) -> the mutex it waits for.
        self._waiting: dict[tuple[str, str], str] = {}

    def holder(self, name: str) -> Build | None:
        """The build holding mutex ``name``, if a live one does."""
        build = self._holders.get(name)
        if build is not None and (build.done or build.canceled):
            del self._holders[name]
            return None
        return build

    def free_for(self, name: str, item_uuid: str, job: str) -> bool:
        """Whether ``job`` of the item may take mutex ``name`` now; if not, it
        is noted as waiting for it."""
        holder = self.holder(name)
        if holder is None or (holder.item_uuid == item_uuid and holder.job == job):
            self._waiting.pop((item_uuid, job), None)
            return True
        if (item_uuid, job) not in self._waiting:
            log.info("%s waits for mutex %s, held by %s", job, name, holder)
        self._waiting[(item_uuid, job)] = name
        return False

    def take(self, name: str, build: Build) -> None:
        """``build`` holds ``name`` now (:meth:`free_for` said it may)."""
        self._waiting.pop((build.item_uuid, build.job), None)
        self._holders[name] = build

    def retake(self, builds: Iterable[Build], mutex_of: dict[str, str]) -> None:
        """Restored running builds hold their jobs' mutexes again (``mutex_of``:
        job -> mutex). Of two running builds of one mutex (the layout changed
        while they ran) both go on running; the mutex stays with the first."""
        for build in builds:
            name = mutex_of.get(build.job)
            if not name or build.done or build.canceled:
                continue
            held = self.holder(name)
            if held is not None and held is not build:
                log.warning("mutex %s: %s and %s both run (restored)", name, held, build)
                continue
            self._holders[name] = build
            log.info("mutex %s held again by restored build %s", name, build)

    def release(self, build: Build) -> None:
        """``build`` completed, was cancelled or forgotten: its mutex is free."""
        for name, held in list(self._holders.items()):
            if held is build:
                del self._holders[name]
                log.info("mutex %s released by %s", name, build)

    def forget_item(self, item_uuid: str) -> None:
        """The item left its pipeline: its jobs wait for nothing any more."""
        for key in [k for k in self._waiting if k[0] == item_uuid]:
            del self._waiting[key]

    def waiting_of(self, item_uuid: str) -> dict[str, str]:
        """Job -> mutex, for the item's jobs waiting for one."""
        return {job: name for (uuid, job), name in self._waiting.items() if uuid == item_uuid}

    def held(self) -> dict[str, str]:
        """Mutex -> the build holding it (``job uuid7``), for status."""
        return {name: str(build) for name in list(self._holders) if (build := self.holder(name))}
