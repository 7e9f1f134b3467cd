"""disable-after-consecutive-failures: when a pipeline disables itself, what
enables it, and what a restart keeps (the scheduler_state row, on SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.layout import load_layout
from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.db.pipeline_state import ROW, PipelineStateStore
from gatekeeper.db.tables import SchedulerState
from gatekeeper.scheduler.pipeline_state import PipelineStates, warn_unused_disabled

pytestmark = pytest.mark.timeout(30)


def pipeline(limit: int | None, name: str = "check") -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": name, "manager": "independent", "disable-after-consecutive-failures": limit}
    )


def states(db: Database) -> PipelineStates:
    """What a (re)started scheduler makes."""
    return PipelineStates(PipelineStateStore(BuildStore(db)))


def test_the_nth_failure_in_a_row_disables_and_a_success_breaks_the_run(db: Database) -> None:
    health = states(db).of(pipeline(3))
    for passed in (False, False, True, False, False):
        health.reported(passed)
    # The success started the count again: two in a row, not four.
    assert (health.failures, health.disabled) == (2, False)
    health.reported(False)
    assert (health.failures, health.disabled) == (3, True)
    # Once disabled, a success resets the count but does not enable it.
    health.reported(True)
    assert (health.failures, health.disabled) == (0, True)


def test_a_restart_keeps_the_count_and_the_disabled_state(db: Database) -> None:
    before = states(db)
    before.of(pipeline(2)).reported(False)
    before.of(pipeline(2, "gate")).reported(False)
    before.of(pipeline(2, "gate")).reported(False)

    after = states(db)
    check, gate = after.of(pipeline(2)), after.of(pipeline(2, "gate"))
    assert (check.failures, check.disabled) == (1, False)
    assert (gate.failures, gate.disabled) == (2, True)


def test_a_reconfiguration_enables_every_pipeline_for_good(db: Database) -> None:
    running = states(db)
    gate = running.of(pipeline(1, "gate"))
    gate.reported(False)
    assert gate.disabled
    running.reset()
    assert running.of(pipeline(1, "gate")).disabled is False
    # ... and a restart after it does not bring the old state back.
    assert states(db).of(pipeline(1, "gate")).disabled is False


def test_a_changed_limit_starts_the_count_afresh(db: Database) -> None:
    states(db).of(pipeline(1)).reported(False)
    # The layout said 1 when it disabled; it says 5 at this start.
    assert states(db).of(pipeline(5)).disabled is False
    assert states(db).of(pipeline(None)).disabled is False


def test_an_unreadable_row_starts_every_pipeline_enabled(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with db.session() as session:
        session.add(SchedulerState(name=ROW, value="{not json"))
    assert states(db).of(pipeline(1)).disabled is False
    assert "unreadable" in caplog.text


def test_a_pipeline_without_a_limit_is_never_counted(db: Database) -> None:
    health = states(db).of(pipeline(None))
    for _ in range(10):
        health.reported(False)
    assert (health.failures, health.disabled) == (0, False)


def test_a_disabled_reporter_without_a_limit_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text(
        "pipelines:\n"
        "  - name: check\n"
        "    manager: independent\n"
        "    disabled:\n"
        "      gerrit: {}\n"
        "  - name: gate\n"
        "    manager: dependent\n"
        "    disabled:\n"
        "      gerrit: {}\n"
        "    disable-after-consecutive-failures: 3\n"
    )
    [line] = warn_unused_disabled(load_layout(path))
    assert line == (
        f"{path}:4: pipelines[0].disabled: never used: the pipeline has no "
        "disable-after-consecutive-failures"
    )
    assert line in caplog.text
