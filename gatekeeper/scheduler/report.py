"""What a report says: the message text and the votes, per pipeline action."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import QueueItem


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


def job_line(build: Build) -> str:
    """``- <job> <url> : <RESULT> in <time>``, the line CI-result plugins parse."""
    result = build.result.value if build.result else "UNKNOWN"
    url = build.url or "(no logs)"
    line = f"- {build.job} {url} : {result}"
    if build.result not in (BuildResult.SKIPPED, None) and build.started_at is not None:
        line += f" in {format_duration(build.duration)}"
    if not build.voting:
        line += " (non-voting)"
    return line


@dataclass
class Report:
    """One ``gerrit review`` to send."""

    message: str
    labels: dict[str, int] = field(default_factory=dict)
    submit: bool = False


def compose_message(
    headline: str, pipeline: str, item: QueueItem, job_order: list[str], footer: str = ""
) -> str:
    lines = [f"{headline.strip().rstrip('.')} ({pipeline} pipeline).", ""]
    if not job_order:
        lines.append("No jobs run for this change here: branch, files and skip-if ruled out all.")
    for name in job_order:
        build = item.builds.get(name)
        if build is not None:
            lines.append(job_line(build))
    text = "\n".join(lines).rstrip() + "\n"
    if footer:
        text += "\n" + footer.rstrip() + "\n"
    return text
