"""URL patterns on their own: what a pattern may name, and how a report line
is filled for a change and for a ref update."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout_schema import JobConfig, PipelineConfig
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.model.patterns import pattern_problem, placeholders
from gatekeeper.scheduler.reports import ReportComposer

pytestmark = pytest.mark.timeout(10)

CHANGE = Change("openstack/nova", "master", 123456, 3, ref="refs/changes/56/123456/3")
REF = Change(
    "openstack/nova", "master", 0, 0, ref="refs/tags/1.0", old_rev="0" * 40, new_rev="ab" * 20
)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("http://x/{change.number}/{build.parameters[LOG_PATH]}", None),
        ("http://x/{{literal}}/{job.name}", None),
        ("http://x/{change.id}", "unknown placeholder '{change.id}'"),
        ("http://x/{build.parameters[log-path]}", "unknown placeholder"),
        ("http://x/{change.number!r}", "without '!' or ':'"),
        ("http://x/{change.number", "not a pattern"),
    ],
)
def test_what_a_pattern_may_name(pattern: str, problem: str | None) -> None:
    found = pattern_problem(pattern)
    assert found is None if problem is None else (found is not None and problem in found)


def composer(job: JobConfig) -> ReportComposer:
    pipeline = PipelineConfig.model_validate({"name": "post", "manager": "independent"})
    return ReportComposer(pipeline, jobs=lambda name: job, facts=lambda build, p: f"<{p}>")


def finished(result: BuildResult) -> Build:
    build = Build(job="tarball", item_uuid="i", url="http://logs/x/", result=result)
    build.started_at, build.ended_at = 100.0, 130.0
    return build


def test_a_ref_update_fills_its_revisions_and_leaves_change_numbers_empty() -> None:
    job = JobConfig(
        name="tarball",
        success_pattern="http://t/{change.ref}/{change.newrev}/{change.number}/{build.number}",
    )
    line = composer(job).job_line(QueueItem(REF, "post"), finished(BuildResult.SUCCESS))
    assert line == f"- tarball http://t/refs/tags/1.0/{'ab' * 20}//<build.number> : SUCCESS in 30s"
    assert placeholders(job.success_pattern or "")[-1] == "build.number"


def test_other_results_keep_the_log_url_and_their_word() -> None:
    job = JobConfig(
        name="tarball",
        success_pattern="http://s/",
        failure_pattern="http://f/",
        failure_message="broken",
    )
    line = composer(job).job_line(QueueItem(CHANGE, "post"), finished(BuildResult.TIMED_OUT))
    assert line == "- tarball http://logs/x/ : TIMED_OUT in 30s"
