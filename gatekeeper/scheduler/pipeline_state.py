"""Disabled pipelines: ``disable-after-consecutive-failures``, as Zuul v2.5 had it.

A pipeline with ``disable-after-consecutive-failures: N`` counts its failing
reports in a row; a success starts the count again. The N-th failure in a
row is still reported as usual; from then on the pipeline sends no start
reports and reports its results only through its ``disabled`` reporters,
until the next reconfiguration (a layout reload) enables it again. As in
Zuul, a merge failure, a change dropped because a change it needs failed,
and an item that ran no job are reported (through the ``disabled``
reporters while disabled) but neither count nor break the run.

Unlike Zuul v2.5, whose count lived in memory, the count and the disabled
state are saved (:mod:`gatekeeper.db.pipeline_state`): a restart for an
upgrade must not quietly put a broken pipeline back to voting. A layout that
changed the pipeline's N meanwhile starts its count afresh.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gatekeeper.config.loader import format_error
from gatekeeper.db.pipeline_state import PipelineStateStore, SavedState

if TYPE_CHECKING:
    from gatekeeper.config.layout import Layout
    from gatekeeper.config.layout_schema import PipelineConfig

log = logging.getLogger(__name__)


class PipelineHealth:
    """One pipeline's run of failures. Scheduler thread only."""

    def __init__(self, name: str, limit: int | None, owner: PipelineStates) -> None:
        self.name = name
        #: disable-after-consecutive-failures (None: never disabled).
        self.limit = limit
        self.failures = 0
        self.disabled = False
        self._owner = owner

    def reported(self, passed: bool) -> None:
        """A result was reported: count it, and disable the pipeline when this
        failure makes ``limit`` in a row (this report itself went out as usual)."""
        if self.limit is None:
            return
        before = (self.failures, self.disabled)
        self.failures = 0 if passed else self.failures + 1
        if not self.disabled and self.failures >= self.limit:
            self.disabled = True
            log.warning(
                "pipeline %s disabled after %d failures in a row: it reports only through "
                "its disabled reporters until the next reconfiguration",
                self.name,
                self.failures,
            )
        if (self.failures, self.disabled) != before:
            self._owner.save()

    def describe(self) -> dict[str, object]:
        """For the status snapshot."""
        return {
            "disabled": self.disabled,
            "consecutive_failures": self.failures,
            "disable_after": self.limit,
        }


class PipelineStates:
    """Every pipeline's :class:`PipelineHealth`, loaded once from the database
    and kept until a reconfiguration. Scheduler thread only."""

    def __init__(self, store: PipelineStateStore | None = None) -> None:
        self.store = store
        self._saved = store.load() if store is not None else {}
        self._healths: dict[str, PipelineHealth] = {}

    def of(self, pipeline: PipelineConfig) -> PipelineHealth:
        """The pipeline's health: the one already made, else as it was saved."""
        found = self._healths.get(pipeline.name)
        if found is not None:
            return found
        limit = pipeline.disable_after_consecutive_failures
        health = PipelineHealth(pipeline.name, limit, self)
        saved = self._saved.get(pipeline.name)
        if saved is not None and limit is not None and saved.limit == limit:
            health.failures, health.disabled = saved.failures, saved.disabled
            if health.disabled:
                log.warning(
                    "pipeline %s is still disabled (after %d failures in a row before the "
                    "restart); a reconfiguration enables it",
                    pipeline.name,
                    health.failures,
                )
        self._healths[pipeline.name] = health
        return health

    def reset(self) -> None:
        """A reconfiguration: every pipeline starts enabled, its count at zero."""
        for health in self._healths.values():
            if health.disabled:
                log.info("pipeline %s enabled again by the reconfiguration", health.name)
        self._healths.clear()
        self._saved = {}
        if self.store is not None:
            self.store.save({})

    def save(self) -> None:
        if self.store is None:
            return
        states = {
            h.name: SavedState(h.failures, h.disabled, h.limit)
            for h in self._healths.values()
            if h.limit is not None and (h.failures or h.disabled)
        }
        self.store.save(states)


def warn_unused_disabled(layout: Layout) -> list[str]:
    """A ``disabled:`` reporter of a pipeline without
    ``disable-after-consecutive-failures`` is never used (Zuul v2.5 accepted
    it silently): each is logged as a warning, and returned."""
    lines = []
    for index, pipeline in enumerate(layout.pipelines):
        if pipeline.disabled is not None and pipeline.disable_after_consecutive_failures is None:
            line = format_error(
                layout.file,
                layout.marks,
                ("pipelines", index, "disabled"),
                "never used: the pipeline has no disable-after-consecutive-failures",
            )
            log.warning("%s", line)
            lines.append(line)
    return lines
