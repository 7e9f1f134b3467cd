"""The 2012 vocabulary of ``layout.yaml``, rewritten to the modern one before validation.

The first Zuul layouts said ``queues:`` for ``pipelines:``,
``IndependentQueueManager``/``DependentQueueManager`` for the managers,
``patchset-uploaded`` for ``patchset-created``, gave triggers as a bare list
and reporters without the ``gerrit:`` level. We accept all of it, rewriting it
to the modern form before validation, and log a warning (``log.warning``, not
:func:`warnings.warn`: these are a user's files, not a Python API, and pytest
turns Python warnings into errors) that names the modern spelling. Each
rewritten key's line marks move along, so error messages show the modern key
path at the line of the original key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gatekeeper.config.loader import format_error
from gatekeeper.config.yamlmarks import KeyPath, Marks
from gatekeeper.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["modernize"]

_REPORTER_KEYS = ("start", "success", "failure", "merge-failure", "disabled")
_REPORTER_NAMES = {"gerrit", "smtp"}
_LEGACY_MANAGERS = {
    "IndependentQueueManager": "IndependentPipelineManager",
    "DependentQueueManager": "DependentPipelineManager",
}
_LEGACY_EVENTS = {"patchset-uploaded": "patchset-created"}


def _move_marks(marks: Marks, old: KeyPath, new: KeyPath) -> None:
    n = len(old)
    for key in [k for k in marks if k[:n] == old]:
        marks.setdefault((*new, *key[n:]), marks[key])


def _legacy(file: Path, marks: Marks, path: KeyPath, old: str, new: str) -> None:
    line = marks.get(path, 1)
    log.warning("%s:%d: '%s' is 2012 vocabulary; write '%s' instead", file, line, old, new)


def modernize(data: dict[str, Any], marks: Marks, file: Path) -> None:
    """Rewrite 2012 spellings in place (see the module docstring), moving their marks."""
    if "queues" in data:
        if "pipelines" in data:
            raise ConfigError(
                format_error(file, marks, ("queues",), "give 'pipelines' or 'queues', not both")
            )
        _legacy(file, marks, ("queues",), "queues", "pipelines")
        data["pipelines"] = data.pop("queues")
        _move_marks(marks, ("queues",), ("pipelines",))
    pipelines = data.get("pipelines")
    if not isinstance(pipelines, list):
        return
    for index, pipeline in enumerate(pipelines):
        if not isinstance(pipeline, dict):
            continue
        here: KeyPath = ("pipelines", index)
        manager = pipeline.get("manager")
        if isinstance(manager, str) and manager in _LEGACY_MANAGERS:
            _legacy(file, marks, (*here, "manager"), manager, _LEGACY_MANAGERS[manager])
            pipeline["manager"] = _LEGACY_MANAGERS[manager]
        trigger = pipeline.get("trigger")
        if isinstance(trigger, list):
            _legacy(file, marks, (*here, "trigger"), "trigger: [...]", "trigger: {gerrit: [...]}")
            trigger = pipeline["trigger"] = {"gerrit": trigger}
            _move_marks(marks, (*here, "trigger"), (*here, "trigger", "gerrit"))
        gerrit = trigger.get("gerrit") if isinstance(trigger, dict) else None
        for t_index, entry in enumerate(gerrit if isinstance(gerrit, list) else []):
            if isinstance(entry, dict):
                _modernize_trigger(entry, marks, file, (*here, "trigger", "gerrit", t_index))
        for key in _REPORTER_KEYS:
            reporter = pipeline.get(key)
            if (
                isinstance(reporter, dict)
                and reporter
                and not any(isinstance(v, dict) for v in reporter.values())
                and not set(reporter) & _REPORTER_NAMES
            ):
                _legacy(
                    file,
                    marks,
                    (*here, key),
                    f"{key}: {{label: vote}}",
                    f"{key}: {{gerrit: {{label: vote}}}}",
                )
                pipeline[key] = {"gerrit": reporter}
                _move_marks(marks, (*here, key), (*here, key, "gerrit"))


def _modernize_trigger(entry: dict[str, Any], marks: Marks, file: Path, here: KeyPath) -> None:
    event = entry.get("event")
    events = event if isinstance(event, list) else [event]
    if any(isinstance(e, str) and e in _LEGACY_EVENTS for e in events):
        for e in events:
            if isinstance(e, str) and e in _LEGACY_EVENTS:
                _legacy(file, marks, (*here, "event"), e, _LEGACY_EVENTS[e])
        fixed = [_LEGACY_EVENTS.get(e, e) if isinstance(e, str) else e for e in events]
        entry["event"] = fixed if isinstance(event, list) else fixed[0]
    approvals = entry.get("approval")
    for a_index, approval in enumerate(approvals if isinstance(approvals, list) else []):
        if isinstance(approval, dict) and "approved" in approval:
            # 2012 Zuul named Gerrit's APRV category 'approved'; the label keeps
            # that spelling (labels match case-insensitively), so only warn.
            _legacy(
                file,
                marks,
                (*here, "approval", a_index, "approved"),
                "approved",
                "Approved (labels match case-insensitively; spell them as Gerrit does)",
            )
