"""What a report says: one place composes the votes and the message of
every report kind (start, success, failure, merge failure, notice).

It runs in the scheduler thread and builds :class:`Report` values;
:mod:`gatekeeper.scheduler.reporter` sends them. Nothing here waits on
anything but a failed job's :data:`FlakyNote` (a bounded and cached database
read). An action's ``smtp:`` part
is handed to the composer's ``mail`` sink as the report is composed
(:mod:`gatekeeper.scheduler.mail` sends it). A disabled pipeline
(:mod:`gatekeeper.scheduler.pipeline_state`) sends no start reports and its
results through its ``disabled`` action.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.model.outside import shown
from gatekeeper.model.patterns import change_values, fill, parameter_name

if TYPE_CHECKING:
    from gatekeeper.config.layout_schema import (
        JobConfig,
        PipelineConfig,
        Reporter,
        SmtpReporter,
    )
    from gatekeeper.db.builds import BuildStore
    from gatekeeper.scheduler.pipeline_state import PipelineHealth

log = logging.getLogger(__name__)

#: Where an action's ``smtp:`` part goes: (pipeline, smtp part, change, kind, message).
MailSink = Callable[["PipelineConfig", "SmtpReporter", Change, str, str], None]

#: What the build in memory cannot say, looked up for a URL pattern:
#: ``(build, placeholder) -> value`` for ``build.number`` and ``build.parameters[X]``.
BuildFacts = Callable[[Build, str], str]

#: A merge failure's headline when the pipeline names none.
DEFAULT_MERGE_FAILURE = (
    "This change was unable to be automatically merged with the current "
    "state of the repository. Please rebase your change and upload a new "
    "patchset."
)


class ReportKind(StrEnum):
    """Which event of a pipeline a report tells of (its log and its retries name it)."""

    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    MERGE_FAILURE = "merge-failure"
    #: A message about the change that is not its result: a dependency loop,
    #: or a change it needs left the queue.
    NOTICE = "notice"


@dataclass(frozen=True)
class Report:
    """One ``gerrit review`` to send. Built in the scheduler thread, sent by a
    reporter thread; immutable so the two never share mutable state."""

    change: Change
    kind: ReportKind
    message: str
    #: Votes as Gerrit spells the labels (``Verified``, ``Code-Review``).
    labels: dict[str, int] = field(default_factory=dict)
    submit: bool = False
    pipeline: str = ""


def format_duration(seconds: float) -> str:
    """``4m 02s``, ``1h 03m 10s``, ``12s``: what people read in CI comments."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def job_line(build: Build, url: str = "", result: str = "") -> str:
    """``- <job> <url> : <RESULT> in <time>``, the line CI-result plugins parse.

    ``url`` and ``result`` replace the build's log URL and result word (a
    job's ``success-pattern`` and ``success-message``, say). A NODE_FAILURE
    that says what the pool had ends ``: NODE_FAILURE (<why>)`` instead: it
    never ran, so it has no logs to link nor a time to give.
    """
    result = result or (build.result.value if build.result else "UNKNOWN")
    url = url or build.url or "(no logs)"
    line = f"- {build.job} {url} : {result}"
    if build.result == BuildResult.NODE_FAILURE and build.node_wait is not None:
        line += f" ({build.node_wait.describe()})"
    elif build.result not in (BuildResult.SKIPPED, None) and build.started_at is not None:
        line += f" in {format_duration(build.duration)}"
    if not build.voting:
        line += " (non-voting)"
    return line


#: A job's flaky line ("this job failed on unchanged code in N% of recent
#: runs", or "" when it has no flaky history): the job's name -> the line.
#: :class:`gatekeeper.insights.flaky.FlakyNotes` answers it from a bounded,
#: cached query; the app hands it over when the site's insights say so.
FlakyNote = Callable[[str], str]


def flaky_lines(build: Build, note: FlakyNote | None) -> list[str]:
    """Under a failed (or timed out) job's line, its flaky line if it has one."""
    if note is None or build.result not in (BuildResult.FAILURE, BuildResult.TIMED_OUT):
        return []
    line = note(build.job)
    return [f"  {line}"] if line else []


#: Results whose logs the worker searches for known failures.
RECOGNISED_RESULTS = frozenset({BuildResult.FAILURE, BuildResult.TIMED_OUT})


def recognised_lines(build: Build) -> list[str]:
    """``  Recognised: <description> <bug URL>``, one per known failure the
    worker found in a failed build's logs (the site's ``failures/``)."""
    if build.result not in RECOGNISED_RESULTS:
        return []
    return [
        f"  Recognised: {shown(r.description, 300)} {shown(r.bug, 300)}".rstrip()
        for r in build.recognised
    ]


def compose_message(
    headline: str,
    pipeline: str,
    item: QueueItem,
    job_order: list[str],
    footer: str = "",
    flaky: FlakyNote | None = None,
    line: Callable[[Build], str] = job_line,
) -> str:
    """The result comment: the headline naming the pipeline, then one
    ``line`` (:func:`job_line` unless given) per job in ``job_order`` (a
    failed one followed by its :func:`flaky_lines`), then the footer."""
    lines = [f"{headline.strip().rstrip('.')} ({pipeline} pipeline).", ""]
    if not job_order:
        lines.append("No jobs run for this change here: branch, files and skip-if ruled out all.")
    for name in job_order:
        build = item.builds.get(name)
        if build is not None:
            lines.append(line(build))
            lines.extend(flaky_lines(build, flaky))
            lines.extend(recognised_lines(build))
    text = "\n".join(lines).rstrip() + "\n"
    if footer:
        text += "\n" + footer.rstrip() + "\n"
    return text


def gerrit_label(change: Change, name: str) -> str:
    """The label as Gerrit spells it: from the change if it carries it, else
    Title-Case per dash (``code-review`` -> ``Code-Review``)."""
    known = change.gerrit_label_name(name)
    if known:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def gerrit_labels(change: Change, votes: Mapping[str, int]) -> dict[str, int]:
    """``votes`` (layout spelling) with each label as Gerrit spells it."""
    return {gerrit_label(change, name): int(value) for name, value in votes.items()}


def _gerrit_action(action: Reporter | None) -> Reporter | None:
    """The reporter action if it has a ``gerrit:`` part, else None."""
    if action is None or action.gerrit is None:
        return None
    return action


class ReportComposer:
    """Composes every report one pipeline sends. Used in the scheduler thread.

    ``pipeline`` is the pipeline's configuration (its ``start``, ``success``,
    ``failure`` and ``merge_failure`` actions and their messages). A method
    returns None when the pipeline reports nothing to Gerrit for that event.
    ``health`` says whether the pipeline is disabled; ``mail`` takes the
    actions' ``smtp:`` parts.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        health: PipelineHealth | None = None,
        mail: MailSink | None = None,
        flaky: FlakyNote | None = None,
        jobs: Callable[[str], JobConfig] | None = None,
        facts: BuildFacts | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.name: str = pipeline.name
        self.health = health
        self.mail = mail
        #: Adds a failed job's flaky line to the result comment (None: never).
        self.flaky = flaky
        #: A job's settings (its report patterns and messages); None: none apply.
        self.jobs = jobs
        #: What a URL pattern needs beyond the build in memory (its number, parameters).
        self.facts = facts

    @property
    def disabled(self) -> bool:
        return self.health is not None and self.health.disabled

    def _final(self, action: Reporter | None) -> Reporter | None:
        """A result's action: the ``disabled`` one while the pipeline is disabled."""
        return self.pipeline.disabled if self.disabled else action

    def _report(
        self,
        change: Change,
        kind: ReportKind,
        action: Reporter | None,
        message: str,
        submit: bool = False,
    ) -> Report | None:
        if action is not None and action.smtp is not None and self.mail is not None:
            self.mail(self.pipeline, action.smtp, change, kind.value, message)
        action = _gerrit_action(action)
        if action is None or change.is_ref:
            # A ref update has no change in Gerrit to review.
            return None
        return Report(
            change=change,
            kind=kind,
            message=message,
            labels=gerrit_labels(change, action.votes),
            submit=submit and bool(action.submit),
            pipeline=self.name,
        )

    def start(self, item: QueueItem) -> Report | None:
        if self.disabled:
            return None
        message = self.pipeline.start_message or f"Starting {self.name} jobs."
        return self._report(item.change, ReportKind.START, self.pipeline.start, message)

    def result_message(self, item: QueueItem, passed: bool, job_order: list[str]) -> str:
        """The result comment: headline, one line per job in ``job_order``, footer."""
        pipeline = self.pipeline
        headline = pipeline.success_message if passed else pipeline.failure_message
        headline = headline or ("Build succeeded." if passed else "Build failed.")
        footer = pipeline.footer_message or ""
        return compose_message(
            headline,
            self.name,
            item,
            job_order,
            footer,
            flaky=self.flaky,
            line=lambda b: self.job_line(item, b),
        )

    def job_line(self, item: QueueItem, build: Build) -> str:
        """:func:`job_line` as the job asks, like Zuul v2.5: on SUCCESS its
        ``success-message`` for the result and ``success-pattern`` for the URL,
        on FAILURE its ``failure-message`` and ``failure-pattern``."""
        if self.jobs is None or build.result not in (BuildResult.SUCCESS, BuildResult.FAILURE):
            return job_line(build)
        job = self.jobs(build.job)
        passed = build.result == BuildResult.SUCCESS
        message = job.success_message if passed else job.failure_message
        pattern = job.success_pattern if passed else job.failure_pattern
        url = self.report_url(item, build, pattern) if pattern else ""
        return job_line(build, url=url, result=message or "")

    def report_url(self, item: QueueItem, build: Build, pattern: str) -> str:
        """``pattern`` filled for ``build`` of ``item`` (see :mod:`gatekeeper.model.patterns`)."""
        known = {
            **change_values(item.change),
            "pipeline.name": self.name,
            "job.name": build.job,
            "build.uuid": build.uuid,
            "build.url": build.url,
            "build.result": build.result.value if build.result else "",
        }

        def value(placeholder: str) -> str:
            if placeholder in known:
                return known[placeholder]
            return self.facts(build, placeholder) if self.facts is not None else ""

        return fill(pattern, value)

    def result(self, item: QueueItem, passed: bool, job_order: list[str]) -> Report | None:
        """Success or failure; a success submits if the pipeline's success
        action asks for it."""
        kind = ReportKind.SUCCESS if passed else ReportKind.FAILURE
        action = self._final(self.pipeline.success if passed else self.pipeline.failure)
        message = self.result_message(item, passed, job_order)
        return self._report(item.change, kind, action, message, submit=True)

    def merge_failure_headline(self) -> str:
        """The merge failure comment's text (restore looks for it on the change)."""
        return self.pipeline.merge_failure_message or DEFAULT_MERGE_FAILURE

    def merge_failure(self, item: QueueItem, reason: str = "") -> Report | None:
        """The merge failure report; ``reason``, when given, is said below the
        headline (why Gerrit will not submit the change)."""
        action = self._final(self.pipeline.merge_failure or self.pipeline.failure)
        headline = self.merge_failure_headline().rstrip() + "\n"
        if reason:
            headline += f"\n{reason}\n"
        return self._report(item.change, ReportKind.MERGE_FAILURE, action, headline)

    def dropped(self, change: Change, need: Change) -> Report | None:
        """``change`` left the queue because ``need``, which it needs, did:
        why, with the failure votes if the pipeline's failure action has any
        (a disabled pipeline: only what its disabled action says)."""
        message = (
            f"This change depends on {need}, which failed to merge or left the "
            f"{self.name} queue; it was taken out of the queue too."
        )
        action = self._final(self.pipeline.failure)
        report = self._report(change, ReportKind.NOTICE, action, message + "\n")
        return report or (None if self.disabled else self.notice(change, message))

    def notice(self, change: Change, message: str) -> Report:
        """A message on the change, without votes."""
        return Report(change, ReportKind.NOTICE, message + "\n", pipeline=self.name)


def stored_facts(builds: BuildStore) -> BuildFacts:
    """:data:`BuildFacts` from the builds table: the build's number among its
    job's builds, and the parameters it was dispatched with."""

    def facts(build: Build, placeholder: str) -> str:
        if placeholder == "build.number":
            number = builds.number(build.uuid)
            return "" if number is None else str(number)
        name = parameter_name(placeholder)
        record = builds.get(build.uuid) if name is not None else None
        if name is None or record is None:
            return ""
        try:
            parameters = json.loads(record.parameters or "{}")
        except ValueError:
            log.warning("build %s: its recorded parameters are not JSON", build)
            return ""
        value = parameters.get(name) if isinstance(parameters, dict) else None
        return "" if value is None else str(value)

    return facts
