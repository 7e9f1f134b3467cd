"""Each pipeline's run of failed reports, kept across restarts.

``disable-after-consecutive-failures`` counts failing reports in a row; a
restart must neither forget the count nor re-enable a pipeline that
disabled itself. The counts live in one ``scheduler_state`` row as JSON
(``{"check": {"failures": 3, "disabled": true, "limit": 3}}``), written by
the scheduler thread whenever one changes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.tables import SchedulerState

__all__ = ["ROW", "PipelineStateStore", "SavedState"]

log = logging.getLogger(__name__)

#: The ``scheduler_state`` row that holds every pipeline's count.
ROW = "pipelines.consecutive-failures"


@dataclass(frozen=True)
class SavedState:
    """One pipeline's count as it was saved."""

    failures: int
    disabled: bool
    #: The pipeline's disable-after-consecutive-failures when it was counted.
    limit: int


class PipelineStateStore:
    """Reads and writes the row; writes join the scheduler thread's batch
    (:meth:`BuildStore.batch`) when it is in one, as the queue items' do."""

    def __init__(self, builds: BuildStore) -> None:
        self.builds = builds

    def load(self) -> dict[str, SavedState]:
        """Every pipeline's saved count ({} when none, or the row is unreadable)."""
        with self.builds.db.session() as session:
            row = session.get(SchedulerState, ROW)
            text = row.value if row is not None else ""
        if not text:
            return {}
        try:
            data = json.loads(text)
            return {
                str(name): SavedState(
                    int(entry["failures"]), bool(entry["disabled"]), int(entry["limit"])
                )
                for name, entry in data.items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Starting with every pipeline enabled beats not starting.
            log.error("scheduler_state %s is unreadable (%s); counting afresh", ROW, exc)
            return {}

    def save(self, states: dict[str, SavedState]) -> None:
        text = json.dumps(
            {
                name: {"failures": s.failures, "disabled": s.disabled, "limit": s.limit}
                for name, s in sorted(states.items())
            }
        )

        def write(session: Session) -> None:
            row = session.get(SchedulerState, ROW)
            if row is None:
                session.add(SchedulerState(name=ROW, value=text))
            else:
                row.value = text

        self.builds._write(write)
