"""Flaky incidents and rates, on build rows written the way the scheduler
writes them (``BuildStore.dispatched`` with the parameters ``build_params``
makes, then ``completed``) to SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from gatekeeper.cli import main
from gatekeeper.config.loader import load_site
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.errors import ConfigError
from gatekeeper.insights.flaky import FlakyNotes, flaky_report
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import QueueItem
from gatekeeper.scheduler.reports import compose_message
from tests.fixtures.build_history import NOW, History, change

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def history(db: Database) -> History:
    return History(db)


def test_a_recheck_that_passes_after_a_failure_is_one_incident(
    db: Database, history: History
) -> None:
    failed = history.build("FAILURE", change(101))
    passed = history.build("SUCCESS", change(101))
    report = flaky_report(db, now=NOW)
    [incident] = report.incidents
    assert [r.uuid for r in incident.failed] == [failed]
    assert incident.passed.uuid == passed
    assert (incident.job, incident.project, incident.change, incident.patchset) == (
        "tempest",
        "openstack/nova",
        101,
        1,
    )
    assert incident.passed.log_path.endswith(f"/check/tempest/{passed[:7]}")
    [rate] = report.rates
    assert (rate.runs, rate.failures, rate.flaky_failures, rate.incidents) == (2, 1, 1, 1)
    assert rate.percent == 50


def test_several_failures_before_the_pass_are_one_incident_and_timeouts_count(
    db: Database, history: History
) -> None:
    first = history.build("FAILURE", change(102))
    second = history.build("TIMED_OUT", change(102))
    history.build("SUCCESS", change(102))
    [incident] = flaky_report(db, now=NOW).incidents
    assert [r.uuid for r in incident.failed] == [first, second]


def test_a_pass_on_a_new_patch_set_is_a_fix_not_flakiness(db: Database, history: History) -> None:
    history.build("FAILURE", change(103, patchset=1))
    history.build("SUCCESS", change(103, patchset=2))
    report = flaky_report(db, now=NOW)
    assert report.incidents == []
    assert report.rates[0].runs == 2 and report.rates[0].flaky_failures == 0


def test_a_pass_with_other_changes_ahead_is_not_the_same_state(
    db: Database, history: History
) -> None:
    # The dependency got a new patch set between the runs: other code.
    history.build("FAILURE", change(104), ahead=[change(90, patchset=1)])
    history.build("SUCCESS", change(104), ahead=[change(90, patchset=2)])
    # And a dependency dropped altogether.
    history.build("FAILURE", change(105), ahead=[change(91)])
    history.build("SUCCESS", change(105))
    assert flaky_report(db, now=NOW).incidents == []


def test_a_gate_reset_is_not_flakiness_but_a_retry_on_the_same_queue_is(
    db: Database, history: History
) -> None:
    """Change 202 was tested behind 201 and failed because 201 was broken;
    after the reset it passed with nothing ahead: not flaky. 203's own
    failure behind nothing, then its pass behind nothing again, is."""
    history.build("FAILURE", change(201), pipeline="gate")
    history.build("FAILURE", change(202), ahead=[change(201)], pipeline="gate")
    history.build("CANCELED", change(203), ahead=[change(201), change(202)], pipeline="gate")
    history.build("SUCCESS", change(202), pipeline="gate")
    history.build("FAILURE", change(203), ahead=[change(202)], pipeline="gate")
    history.build("SUCCESS", change(203), ahead=[change(202)], pipeline="gate")
    [incident] = flaky_report(db, now=NOW).incidents
    assert (incident.change, incident.pipeline) == (203, "gate")


def test_a_failure_in_check_and_a_pass_in_gate_are_different_states(
    db: Database, history: History
) -> None:
    history.build("FAILURE", change(106), pipeline="check")
    history.build("SUCCESS", change(106), pipeline="gate")
    assert flaky_report(db, now=NOW).incidents == []


def test_infrastructure_results_are_neither_failures_nor_runs(
    db: Database, history: History
) -> None:
    for result in ("NODE_FAILURE", "MERGER_FAILURE", "RETRY_LIMIT", "ABORTED", "ERROR"):
        history.build(result, change(107))
    history.build("SUCCESS", change(107))
    report = flaky_report(db, now=NOW)
    assert report.incidents == []
    assert report.rates[0].runs == 1


def test_other_jobs_and_projects_are_other_states(db: Database, history: History) -> None:
    history.build("FAILURE", change(108), job="tempest")
    history.build("SUCCESS", change(108), job="pep8")
    assert flaky_report(db, now=NOW).incidents == []


def test_the_rate_is_flaky_failures_over_counted_runs_in_the_window(
    db: Database, history: History
) -> None:
    # Outside the window: an old incident that must not count.
    history.build("FAILURE", change(300), ago=9)
    history.build("SUCCESS", change(300), ago=9)
    # In the window: one incident of two failures, a real failure never
    # passed, and six passes on other changes: 2 of 10 runs.
    history.build("FAILURE", change(301))
    history.build("FAILURE", change(301))
    history.build("SUCCESS", change(301))
    history.build("FAILURE", change(302))
    for number in range(303, 309):
        history.build("SUCCESS", change(number))
    history.build("FAILURE", change(400), job="pep8")
    report = flaky_report(db, days=7, now=NOW)
    tempest, pep8 = report.rates
    assert (tempest.job, tempest.runs, tempest.failures, tempest.flaky_failures) == (
        "tempest",
        10,
        3,
        2,
    )
    assert tempest.percent == 20
    assert (pep8.job, pep8.percent) == ("pep8", 0)
    # A wider window takes the old incident in.
    wide = flaky_report(db, days=10, now=NOW)
    assert len(wide.incidents) == 2 and wide.rates[0].runs == 12
    # One job only.
    assert [r.job for r in flaky_report(db, job="pep8", now=NOW).rates] == ["pep8"]


def test_the_report_line_needs_an_incident_and_enough_runs(db: Database, history: History) -> None:
    history.build("FAILURE", change(501))
    history.build("SUCCESS", change(501))
    history.build("FAILURE", change(502))
    history.build("FAILURE", change(503), job="pep8")
    notes = FlakyNotes(db, days=7, min_runs=3, clock=lambda: NOW)
    assert notes.line("tempest") == "this job failed on unchanged code in 33% of recent runs"
    # pep8 fails, but never on unchanged code; an unknown job has no runs.
    assert notes.line("pep8") == ""
    assert notes.line("no-such-job") == ""
    # Three runs are not enough when five are asked for.
    assert FlakyNotes(db, min_runs=5, clock=lambda: NOW).line("tempest") == ""


def test_the_report_line_is_cached_for_its_ttl(db: Database, history: History) -> None:
    now = [NOW]
    notes = FlakyNotes(db, min_runs=1, ttl=300, clock=lambda: now[0])
    assert notes.line("tempest") == ""
    history.build("FAILURE", change(601))
    history.build("SUCCESS", change(601))
    # Within the TTL the answer is the one read before (no query per report)...
    assert notes.line("tempest") == ""
    now[0] += 301
    # ...and after it the new incident shows.
    assert "50%" in notes.line("tempest")


def test_a_database_that_fails_gives_no_line_and_no_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'missing' / 'gk.db'}")
    notes = FlakyNotes(database, min_runs=1)
    assert notes.line("tempest") == ""


def test_rows_without_a_state_are_left_out(db: Database, history: History) -> None:
    """A build recorded before its parameters were (or with parameters that
    are not JSON) cannot be compared: it is no run."""
    kept = history.build("SUCCESS", change(701))
    broken = history.build("FAILURE", change(701))
    with db.session() as session:
        session.execute(
            update(BuildRecord).where(BuildRecord.uuid == broken).values(parameters="{not json")
        )
    report = flaky_report(db, now=NOW)
    assert report.rates[0].runs == 1 and report.incidents == []
    assert kept


def test_the_flaky_line_goes_under_failed_jobs_only() -> None:
    item = QueueItem(change=change(801), pipeline="check")
    results = {"tempest": BuildResult.FAILURE, "grenade": BuildResult.TIMED_OUT}
    results |= {"pep8": BuildResult.SUCCESS, "docs": BuildResult.NODE_FAILURE}
    for job, result in results.items():
        item.builds[job] = Build(job=job, item_uuid=item.uuid, result=result, url=f"u/{job}")
    asked: list[str] = []

    def note(job: str) -> str:
        asked.append(job)
        return "" if job == "grenade" else f"this job failed on unchanged code in 7% ({job})"

    text = compose_message("Build failed.", "check", item, list(results), flaky=note)
    lines = text.splitlines()[2:]
    assert lines[0].startswith("- tempest u/tempest : FAILURE")
    assert lines[1] == "  this job failed on unchanged code in 7% (tempest)"
    assert [line.split()[1] for line in lines[2:]] == ["grenade", "pep8", "docs"]
    # A pass, or a build that never ran the job, has no flaky history to tell.
    assert asked == ["tempest", "grenade"]


def test_the_site_turns_the_flaky_line_off_and_its_keys_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("insights:\n  flaky-comment: false\n  flaky-days: 14\n")
    site = load_site(path, tmp_path)
    assert site.insights.flaky_comment is False and site.insights.flaky_days == 14
    assert load_site(None, tmp_path).insights.flaky_comment is True
    path.write_text("insights:\n  flaky-days: 0\n  flaky-comment: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_site(path, tmp_path)
    assert f"{path}:2: insights.flaky-days: " in info.value.errors[0]
    assert f"{path}:3: insights.flaky-comment: " in info.value.errors[1]


def test_the_cli_lists_rates_then_incidents_escaped(tmp_path: Path) -> None:
    site = tmp_path / "gatekeeper.yaml"
    site.write_text(f"state-dir: {tmp_path / 'state'}\n")
    db = Database(f"sqlite:///{tmp_path / 'state' / 'gatekeeper.db'}")
    db.migrate()
    history = History(db, now=time.time())
    failed = history.build("FAILURE", change(901))
    passed = history.build("SUCCESS", change(901))
    # A job name with a terminal escape and a newline: shown escaped, on one line.
    history.build("FAILURE", change(902), job="evil\x1b[31m\nFORGED")
    history.build("SUCCESS", change(902), job="evil\x1b[31m\nFORGED")
    history.build("SUCCESS", change(903), job="pep8", ago=8)
    db.dispose()
    runner = CliRunner()
    out = runner.invoke(main, ["insights", "flaky", "-c", str(site)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "flaky jobs over the last 7 days"
    [tempest] = [line.split() for line in lines if line.startswith("tempest ")]
    assert tempest == ["tempest", "2", "1", "1", "1", "50%"]
    assert "\x1b" not in out.output and "evil\\x1b[31m\\nFORGED" in out.output
    assert not any(line.startswith("FORGED") for line in lines)
    # pep8's only run is older than the window.
    assert "pep8" not in out.output
    assert "2 incidents" in out.output
    [row] = [line for line in lines if failed[:12] in line]
    assert "901,1" in row and passed[:12] in row and "(FAILURE)" in row
    only = runner.invoke(
        main, ["insights", "flaky", "-c", str(site), "--job", "pep8", "--days", "9"]
    )
    assert only.exit_code == 0, only.output
    assert "pep8" in only.output and "tempest" not in only.output
    assert "no flaky incidents" in only.output
    bad = runner.invoke(main, ["insights", "flaky", "-c", str(site), "--days", "0"])
    assert bad.exit_code == 2 and "--days" in bad.output


def test_whatever_goes_wrong_reading_the_rate_the_report_goes_out_without_the_line(
    db: Database, history: History, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FlakyNotes):
        def rate(self, job: str) -> None:
            raise RuntimeError("a bug in the rate")

    history.build("FAILURE", change(1001))
    history.build("SUCCESS", change(1001))
    assert Broken(db, min_runs=1, clock=lambda: NOW).line("tempest") == ""
    assert "a bug in the rate" in caplog.text
