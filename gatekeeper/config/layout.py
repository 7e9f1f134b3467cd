"""``layout.yaml``: pipelines, jobs, project templates and projects (Zuul v2 schema).

The models follow Zuul v2's layout so existing layouts load unchanged; each
model forbids unknown keys (reported with a "did you mean"), and every regex
is compiled at load time so a broken one is reported with its file, line and
key path instead of failing on the first matching event.

Label names inside approvals keep the layout's spelling: turning them into
Gerrit's spelling (and matching case-insensitively) is the scheduler's job.

2012 vocabulary. The first Zuul layouts said ``queues:`` for ``pipelines:``,
``IndependentQueueManager``/``DependentQueueManager`` for the managers,
``patchset-uploaded`` for ``patchset-created``, gave triggers as a bare list
and reporters without the ``gerrit:`` level. We accept all of it, rewriting it
to the modern form before validation, and log a warning (``log.warning``, not
:func:`warnings.warn`: these are a user's files, not a Python API, and pytest
turns Python warnings into errors) that names the modern spelling. Error
messages then show the modern key path, at the line of the original key.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gatekeeper.config import yamlmarks
from gatekeeper.config.loader import (
    describe,
    format_error,
    model_keys,
    suggest,
    unknown_key_message,
    validate,
)
from gatekeeper.config.yamlmarks import KeyPath, Marks
from gatekeeper.errors import ConfigError
from gatekeeper.model.gerrit_vocabulary import KNOWN_TYPES

log = logging.getLogger(__name__)

__all__ = [
    "ApprovalRequirement",
    "GerritAction",
    "GerritTrigger",
    "JobConfig",
    "JobDefinition",
    "JobTree",
    "Layout",
    "LayoutCounts",
    "LayoutFile",
    "PipelineConfig",
    "PipelineRequire",
    "ProjectConfig",
    "ProjectTemplate",
    "Reporter",
    "SmtpReporter",
    "TemplateRef",
    "TimerTrigger",
    "Triggers",
    "ZuulTrigger",
    "load_layout",
    "validate_layout_file",
]

# ---------------------------------------------------------------------------
# Field types


def _compile(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression, got {type(value).__name__}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


@functools.cache
def _known_keys(model: type[BaseModel], catch_all: str) -> frozenset[str]:
    """The keys of ``model`` that are fields, not entries of its ``catch_all`` mapping."""
    return frozenset(model_keys(model)) - {catch_all}


def _to_list(value: Any) -> Any:
    """Zuul lets a single value stand for a one-item list almost everywhere."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _vote(value: Any) -> int | None:
    """A label vote as Zuul reads it: a number, or a string of one (``'+2'``); else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    return None


Regex = Annotated[re.Pattern[str], PlainValidator(_compile)]
RegexList = Annotated[list[Regex], BeforeValidator(_to_list)]
StrList = Annotated[list[str], BeforeValidator(_to_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


# ---------------------------------------------------------------------------
# Pipelines


def _required_votes(value: Any) -> dict[str, list[int]]:
    """``{label: vote or [votes]}`` of a ``require``/``reject`` approval."""
    out: dict[str, list[int]] = {}
    for label, votes in value.items():
        out[label] = []
        for vote in _to_list(votes):
            number = _vote(vote)
            if number is None:
                raise PydanticCustomError(
                    "votes",
                    "a required vote must be a number or a list of numbers, got {vote}",
                    {"vote": describe(vote), "path": (label,)},
                )
            out[label].append(number)
    return out


class ApprovalRequirement(_Model):
    """One entry of ``require: approval:`` / ``require-approval:``.

    Every key that is not one of the fields below is a label name; its value
    is one accepted vote or a list of them.
    """

    username: Regex | None = None
    email: Regex | None = Field(
        default=None, validation_alias=AliasChoices("email", "email-filter")
    )
    older_than: str | None = Field(default=None, alias="older-than")
    newer_than: str | None = Field(default=None, alias="newer-than")
    labels: Annotated[dict[str, list[int]], PlainValidator(_required_votes)] = Field(
        default_factory=dict
    )

    @model_validator(mode="before")
    @classmethod
    def _split_labels(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = _known_keys(cls, "labels")
        out: dict[str, Any] = {"labels": {}}
        for key, value in data.items():
            if key in known:
                out[key] = value
            else:
                out["labels"][str(key)] = _to_list(value)
        return out

    @field_validator("older_than", "newer_than")
    @classmethod
    def _age(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+[smhdw]?", str(value)):
            raise ValueError(f"expected an age like '48h' or '2d', got {value!r}")
        return value


def _trigger_approval(value: Any) -> dict[str, int]:
    """One ``approval:`` entry of a trigger: ``{label: vote}``, one vote per label."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "approval",
            "expected a mapping of labels to votes, got {value}",
            {"value": describe(value)},
        )
    out: dict[str, int] = {}
    for label, vote in value.items():
        number = _vote(vote)
        if number is None:
            raise PydanticCustomError(
                "approval",
                "a trigger approval is one vote (a number), got {vote}",
                {"vote": describe(vote), "path": (label,)},
            )
        out[str(label)] = number
    return out


TriggerApproval = Annotated[dict[str, int], PlainValidator(_trigger_approval)]


# A trigger's ``event`` is a regex; one that reads like a plain event name must
# name a real one, or the pipeline silently never triggers.
_EVENT_NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")
# Gerrit's events (the listener skips any other); 2012's patchset-uploaded is
# rewritten to patchset-created before validation.
_GERRIT_EVENTS = sorted(KNOWN_TYPES)
# The events gatekeeper emits itself, for ``trigger: zuul:``.
_ZUUL_EVENTS = ["parent-change-enqueued", "project-change-merged"]


def _check_events(
    patterns: list[re.Pattern[str]], known: list[str], what: str
) -> list[re.Pattern[str]]:
    for index, pattern in enumerate(patterns):
        name = pattern.pattern
        if _EVENT_NAME.fullmatch(name) and name not in known:
            message = unknown_key_message(name, known).replace("unknown key", f"unknown {what}", 1)
            raise PydanticCustomError("event", "{message}", {"message": message, "path": (index,)})
    return patterns


class GerritTrigger(_Model):
    """One ``trigger: gerrit:`` entry; ``event`` (like every filter) is a list of regexes."""

    event: RegexList
    branch: RegexList = Field(default_factory=list)
    ref: RegexList = Field(default_factory=list)
    ignore_deletes: bool = Field(default=True, alias="ignore-deletes")
    approval: Annotated[list[TriggerApproval], BeforeValidator(_to_list)] = Field(
        default_factory=list
    )
    comment: RegexList = Field(
        default_factory=list, validation_alias=AliasChoices("comment", "comment_filter")
    )
    email: RegexList = Field(
        default_factory=list, validation_alias=AliasChoices("email", "email_filter")
    )
    username: RegexList = Field(
        default_factory=list, validation_alias=AliasChoices("username", "username_filter")
    )
    require_approval: Annotated[list[ApprovalRequirement], BeforeValidator(_to_list)] = Field(
        default_factory=list, alias="require-approval"
    )
    reject_approval: Annotated[list[ApprovalRequirement], BeforeValidator(_to_list)] = Field(
        default_factory=list, alias="reject-approval"
    )

    @field_validator("event")
    @classmethod
    def _events(cls, value: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
        return _check_events(value, _GERRIT_EVENTS, "Gerrit event")


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# Zuul v2's order (minute hour day month weekday [second]) and APScheduler's ranges:
# (name, lowest, highest, {name: number}).
_CRON_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {"last": 31}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
    ("second", 0, 59, {}),
]
_CRON_PART = re.compile(r"(?P<range>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>[^/]*))?")


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> str | None:
    """What is wrong with one cron field (``*/15``, ``1-5``, ``mon-fri``, ``0,30``), or None."""
    for part in text.split(","):
        match = _CRON_PART.fullmatch(part)
        if match is None:
            return f"{part!r} is not a value, a range or a step"
        step = match.group("step")
        if step is not None and not (step.isdigit() and int(step) >= 1):
            return f"step {step!r} is not a positive number"
        if match.group("range") == "*":
            continue
        bounds: list[int] = []
        for item in match.group("range").split("-"):
            if item.isdigit():
                number = int(item)
            elif item.lower() in names:
                number = names[item.lower()]
            else:
                kind = f"a number or a name ({', '.join(names)})" if names else "a number"
                return f"{item!r} is not {kind}"
            if not low <= number <= high:
                return f"{item!r} is out of range {low}-{high}"
            bounds.append(number)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            return f"range {match.group('range')!r} runs backwards"
    return None


class TimerTrigger(_Model):
    """``trigger: timer:``: a cron line (5 fields, or 6 with seconds)."""

    time: str

    @field_validator("time")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"expected a cron line of 5 or 6 fields, got {value!r}")
        for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=False):
            problem = _cron_field(text, low, high, names)
            if problem is not None:
                raise ValueError(f"{what} {problem} in cron line {value!r}")
        return value


class ZuulTrigger(_Model):
    """``trigger: zuul:``: events gatekeeper itself emits (e.g. project-change-merged)."""

    event: RegexList
    pipeline: RegexList = Field(default_factory=list)
    require_approval: Annotated[list[ApprovalRequirement], BeforeValidator(_to_list)] = Field(
        default_factory=list, alias="require-approval"
    )
    reject_approval: Annotated[list[ApprovalRequirement], BeforeValidator(_to_list)] = Field(
        default_factory=list, alias="reject-approval"
    )

    @field_validator("event")
    @classmethod
    def _events(cls, value: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
        return _check_events(value, _ZUUL_EVENTS, "gatekeeper event")


class Triggers(_Model):
    gerrit: Annotated[list[GerritTrigger], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    timer: Annotated[list[TimerTrigger], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    zuul: Annotated[list[ZuulTrigger], BeforeValidator(_none_to_list)] = Field(default_factory=list)


class PipelineRequire(_Model):
    """``require:`` / ``reject:``: what a change must (not) have to enter a pipeline."""

    approval: Annotated[list[ApprovalRequirement], BeforeValidator(_to_list)] = Field(
        default_factory=list
    )
    open: bool | None = None
    current_patchset: bool | None = Field(default=None, alias="current-patchset")
    status: StrList = Field(default_factory=list)


def _gerrit_action(value: Any) -> dict[str, int | bool]:
    """``{label: vote, ..., submit: true}``; a boolean value is an option flag."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a mapping of labels to votes (and 'submit: true'), got {describe(value)}"
        )
    out: dict[str, int | bool] = {}
    for key, vote in value.items():
        if isinstance(vote, bool):
            out[str(key)] = vote
        elif key == "submit":
            raise PydanticCustomError(
                "gerrit_action",
                "'submit' must be true or false, got {vote}",
                {"vote": describe(vote), "path": (key,)},
            )
        elif (number := _vote(vote)) is not None:
            out[str(key)] = number
        else:
            raise PydanticCustomError(
                "gerrit_action",
                "a vote must be a number, got {vote}",
                {"vote": describe(vote), "path": (key,)},
            )
    return out


# The ``gerrit:`` part of a reporter, as a plain dict so it reads like the YAML:
# ``{"verified": 2, "submit": True}``; ``{}`` reports a message without voting.
GerritAction = Annotated[dict[str, int | bool], PlainValidator(_gerrit_action)]


class SmtpReporter(_Model):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    subject: str | None = None


class Reporter(_Model):
    """What one pipeline event (start, success, failure...) reports, and where."""

    gerrit: GerritAction | None = None
    smtp: SmtpReporter | None = None

    @property
    def votes(self) -> dict[str, int]:
        """Label votes of the ``gerrit:`` part (options like ``submit`` left out)."""
        return {k: int(v) for k, v in (self.gerrit or {}).items() if not isinstance(v, bool)}

    @property
    def submit(self) -> bool:
        return bool((self.gerrit or {}).get("submit", False))

    @field_validator("smtp", mode="before")
    @classmethod
    def _empty_smtp(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("gerrit", mode="before")
    @classmethod
    def _empty_gerrit(cls, value: Any) -> Any:
        return {} if value is None else value


_MANAGERS = {
    "independent": "independent",
    "dependent": "dependent",
    "IndependentPipelineManager": "independent",
    "DependentPipelineManager": "dependent",
}

DEFAULT_SUCCESS_MESSAGE = "Build succeeded."
DEFAULT_FAILURE_MESSAGE = "Build failed."
DEFAULT_MERGE_FAILURE_MESSAGE = (
    "Merge failed. This change (or a change it depends on) does not merge cleanly "
    "with the current state of its repository; rebase it and upload a new patchset."
)


class PipelineConfig(_Model):
    """One pipeline of ``layout.yaml``; read-only once loaded (scheduler thread)."""

    name: str
    description: str = ""
    manager: Literal["independent", "dependent"]
    source: str = "gerrit"
    precedence: Literal["high", "normal", "low"] = "normal"
    require: PipelineRequire = Field(default_factory=PipelineRequire)
    reject: PipelineRequire = Field(default_factory=PipelineRequire)
    trigger: Triggers = Field(default_factory=Triggers)
    start: Reporter | None = None
    success: Reporter | None = None
    failure: Reporter | None = None
    merge_failure: Reporter | None = Field(default=None, alias="merge-failure")
    disabled: Reporter | None = None
    start_message: str | None = Field(default=None, alias="start-message")
    success_message: str = Field(default=DEFAULT_SUCCESS_MESSAGE, alias="success-message")
    failure_message: str = Field(default=DEFAULT_FAILURE_MESSAGE, alias="failure-message")
    merge_failure_message: str = Field(
        default=DEFAULT_MERGE_FAILURE_MESSAGE, alias="merge-failure-message"
    )
    footer_message: str | None = Field(default=None, alias="footer-message")
    dequeue_on_new_patchset: bool = Field(default=True, alias="dequeue-on-new-patchset")
    ignore_dependencies: bool = Field(default=False, alias="ignore-dependencies")
    window: int = Field(default=20, ge=0)
    window_floor: int = Field(default=3, ge=1, alias="window-floor")
    window_increase_type: Literal["linear", "exponential"] = Field(
        default="linear", alias="window-increase-type"
    )
    window_increase_factor: int = Field(default=1, ge=1, alias="window-increase-factor")
    window_decrease_type: Literal["linear", "exponential"] = Field(
        default="exponential", alias="window-decrease-type"
    )
    window_decrease_factor: int = Field(default=2, ge=1, alias="window-decrease-factor")
    disable_after_consecutive_failures: int | None = Field(
        default=None, ge=1, alias="disable-after-consecutive-failures"
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value != "gerrit":
            message = unknown_key_message(value, ["gerrit"]).replace(
                "unknown key", "unknown source"
            )
            raise ValueError(f"{message}: gatekeeper takes changes from Gerrit only")
        return value

    @field_validator("manager", mode="before")
    @classmethod
    def _manager(cls, value: Any) -> Any:
        if isinstance(value, str) and value in _MANAGERS:
            return _MANAGERS[value]
        raise ValueError(
            f"unknown manager {value!r}: use 'independent' or 'dependent' "
            "(IndependentPipelineManager / DependentPipelineManager)"
        )

    @property
    def dependent(self) -> bool:
        return self.manager == "dependent"


# ---------------------------------------------------------------------------
# Jobs


class SkipIf(_Model):
    """One ``skip-if`` condition: all given filters must match for the job to be skipped."""

    project: Regex | None = None
    branch: Regex | None = None
    all_files_match_any: RegexList = Field(default_factory=list, alias="all-files-match-any")


class SwiftTarget(BaseModel):
    """A ``swift:`` entry; only ``name`` is interpreted, the rest is kept for the job."""

    model_config = ConfigDict(extra="allow")
    name: str


class JobDefinition(_Model):
    """One ``jobs:`` entry as written: unset fields are ``None`` so regex entries can layer."""

    name: str
    queue_name: str | None = Field(default=None, alias="queue-name")
    failure_message: str | None = Field(default=None, alias="failure-message")
    success_message: str | None = Field(default=None, alias="success-message")
    failure_pattern: str | None = Field(default=None, alias="failure-pattern")
    success_pattern: str | None = Field(default=None, alias="success-pattern")
    hold_following_changes: bool | None = Field(default=None, alias="hold-following-changes")
    voting: bool | None = None
    attempts: int | None = Field(default=None, ge=1)
    mutex: str | None = None
    tags: StrList | None = None
    branch: RegexList | None = None
    files: RegexList | None = None
    skip_if: Annotated[list[SkipIf], BeforeValidator(_to_list)] | None = Field(
        default=None, alias="skip-if"
    )
    parameter_function: str | None = Field(default=None, alias="parameter-function")
    swift: Annotated[list[SwiftTarget], BeforeValidator(_to_list)] | None = None
    # gatekeeper's own: where and how the job runs.
    node: str | None = None
    run: str | None = None
    logs: StrList | None = None
    timeout: int | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value.startswith("^"):
            _compile(value)
        return value

    @property
    def is_regex(self) -> bool:
        return self.name.startswith("^")

    def matches(self, job_name: str) -> bool:
        if self.is_regex:
            return re.match(self.name, job_name) is not None
        return self.name == job_name


@dataclass
class JobConfig:
    """A job's effective settings: every matching ``jobs:`` entry applied, with defaults."""

    name: str
    queue_name: str | None = None
    failure_message: str | None = None
    success_message: str | None = None
    failure_pattern: str | None = None
    success_pattern: str | None = None
    hold_following_changes: bool = False
    voting: bool = True
    attempts: int = 3
    mutex: str | None = None
    tags: list[str] = field(default_factory=list)
    branch: list[re.Pattern[str]] = field(default_factory=list)
    files: list[re.Pattern[str]] = field(default_factory=list)
    skip_if: list[SkipIf] = field(default_factory=list)
    parameter_function: str | None = None
    swift: list[SwiftTarget] = field(default_factory=list)
    node: str = "devstack-vm"
    run: str | None = None
    logs: list[str] = field(default_factory=list)
    # Seconds; 0 when the layout gives none: the site's worker.job-timeout applies.
    timeout: int = 0

    def branch_matches(self, branch: str) -> bool:
        """True when the job runs on ``branch`` (no ``branch:`` means every branch)."""
        return not self.branch or any(p.match(branch) for p in self.branch)

    def files_match(self, files: Iterable[str]) -> bool:
        """True when any changed file matches ``files:`` (none given means always)."""
        if not self.files:
            return True
        return any(p.match(f) for f in files for p in self.files)


_JOB_FIELDS = [n for n in JobDefinition.model_fields if n != "name"]


def _apply(config: JobConfig, definition: JobDefinition) -> None:
    for name in _JOB_FIELDS:
        value = getattr(definition, name)
        if value is None:
            continue
        if name == "tags":
            config.tags = list(dict.fromkeys([*config.tags, *value]))
        else:
            setattr(config, name, value)


# ---------------------------------------------------------------------------
# Projects and templates


@dataclass
class JobTree:
    """A job and the jobs that run only after it succeeds."""

    name: str
    children: list[JobTree] = field(default_factory=list)

    def walk(self) -> Iterator[JobTree]:
        yield self
        for child in self.children:
            yield from child.walk()


def _parse_trees(value: Any, path: KeyPath) -> list[JobTree]:
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    trees: list[JobTree] = []
    for index, item in enumerate(value):
        here = (*path, index)
        if isinstance(item, str):
            trees.append(JobTree(item))
        elif isinstance(item, dict) and item:
            for parent, children in item.items():
                if not isinstance(parent, str):
                    raise PydanticCustomError(
                        "job_tree", "a job name must be a string", {"path": here}
                    )
                trees.append(JobTree(parent, _parse_trees(children, (*here, parent))))
        elif isinstance(item, list):
            trees.extend(_parse_trees(item, here))
        else:
            raise PydanticCustomError(
                "job_tree",
                "expected a job name or 'job: [jobs that run after it]'",
                {"path": here},
            )
    return trees


def _parse_pipeline_trees(value: Any) -> dict[str, list[JobTree]]:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of pipeline names to job lists")
    return {str(k): _parse_trees(v, (k,)) for k, v in value.items()}


PipelineTrees = Annotated[dict[str, list[JobTree]], PlainValidator(_parse_pipeline_trees)]


def _split_pipelines(cls: type[BaseModel], data: Any) -> Any:
    """Keys that are not fields are pipeline names; they're checked once pipelines are known."""
    if not isinstance(data, dict):
        return data
    known = _known_keys(cls, "pipelines")
    out: dict[str, Any] = {"pipelines": {}}
    for key, value in data.items():
        if key in known:
            out[key] = value
        else:
            out["pipelines"][key] = value
    return out


class TemplateRef(_Model):
    """``template: - name: python-jobs`` plus any parameters its job names use."""

    name: str
    params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        params = {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}
        if "name" not in data:
            return {"params": params}  # only "missing required key 'name'"
        return {"name": data["name"], "params": {k: v for k, v in params.items() if k != "name"}}


class ProjectTemplate(_Model):
    """A named set of job trees per pipeline; ``{name}`` is the project's short name."""

    name: str
    pipelines: PipelineTrees = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        return _split_pipelines(cls, data)


class ProjectConfig(_Model):
    """One ``projects:`` entry."""

    name: str
    template: Annotated[list[TemplateRef], BeforeValidator(_to_list)] = Field(default_factory=list)
    merge_mode: Literal["merge", "merge-resolve", "cherry-pick"] = Field(
        default="merge-resolve", alias="merge-mode"
    )
    pipelines: PipelineTrees = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        return _split_pipelines(cls, data)

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]


class IncludeSpec(_Model):
    python_file: str = Field(alias="python-file")


class LayoutFile(_Model):
    """The whole file as written (after 2012 spellings are modernised)."""

    includes: Annotated[list[IncludeSpec], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    pipelines: Annotated[list[PipelineConfig], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    project_templates: Annotated[list[ProjectTemplate], BeforeValidator(_none_to_list)] = Field(
        default_factory=list, alias="project-templates"
    )
    jobs: Annotated[list[JobDefinition], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    projects: Annotated[list[ProjectConfig], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )


# ---------------------------------------------------------------------------
# The loaded layout

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _merge_trees(
    target: list[JobTree], additions: list[JobTree], rename: Callable[[str], str] | None = None
) -> None:
    """Merge copies of ``additions`` (each name passed through ``rename``) into ``target``.

    A job listed twice (by a template and the project) runs once, with both sets of children.
    """
    if not additions:
        return
    by_name = {t.name: t for t in target}
    for tree in additions:
        name = tree.name if rename is None else rename(tree.name)
        existing = by_name.get(name)
        if existing is None:
            existing = by_name[name] = JobTree(name, [])
            target.append(existing)
        if tree.children:
            _merge_trees(existing.children, tree.children, rename)


class Layout:
    """A validated layout with the look-ups the scheduler needs.

    Built once by :func:`load_layout` and then only read (scheduler thread);
    a reload builds a new one. A project's job trees are expanded from its
    templates when first asked for, and kept: loading checks only that they
    can be (every template known, every parameter given).
    """

    def __init__(
        self,
        config: LayoutFile,
        file: Path,
        marks: Marks | None = None,
        functions: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.config = config
        self.file = file
        self.marks: Marks = marks or {}
        self.functions: dict[str, Callable[..., Any]] = functions or {}
        self._pipelines = {p.name: p for p in config.pipelines}
        self._templates = {t.name: t for t in config.project_templates}
        self._projects = {p.name: p for p in config.projects}
        # By identity: list.index would compare pydantic models field by field, O(n²) in all.
        self._project_index = {id(p): i for i, p in enumerate(config.projects)}
        self._literal_jobs = {j.name: j for j in config.jobs if not j.is_regex}
        self._regex_jobs = [j for j in config.jobs if j.is_regex]
        self._expanded: dict[str, dict[str, list[JobTree]]] = {}
        self._template_params: dict[str, list[str]] = {}
        self._job_cache: dict[str, JobConfig] = {}

    @property
    def pipelines(self) -> list[PipelineConfig]:
        """Every pipeline, in file order."""
        return list(self.config.pipelines)

    def pipeline(self, name: str) -> PipelineConfig:
        """:raises KeyError: when no pipeline has that name."""
        return self._pipelines[name]

    @property
    def projects(self) -> list[ProjectConfig]:
        return list(self.config.projects)

    def project(self, name: str) -> ProjectConfig | None:
        return self._projects.get(name)

    @property
    def project_names(self) -> list[str]:
        return [p.name for p in self.config.projects]

    def _index(self, project: ProjectConfig) -> int:
        return self._project_index[id(project)]

    def _expand(self, project: ProjectConfig) -> dict[str, list[JobTree]]:
        """Templates first (in the order listed), then the project's own trees.

        :raises ConfigError: for an unknown template or a missing template parameter.
        """
        cached = self._expanded.get(project.name)
        if cached is not None:
            return cached
        errors = self._template_errors(project, self._index(project))
        if errors:
            raise ConfigError(errors)
        result: dict[str, list[JobTree]] = {}
        for ref in project.template:
            template = self._templates[ref.name]
            fill = _filler({**ref.params, "name": project.short_name})
            for pipeline, trees in template.pipelines.items():
                _merge_trees(result.setdefault(pipeline, []), trees, fill)
        for pipeline, trees in project.pipelines.items():
            _merge_trees(result.setdefault(pipeline, []), trees)
        self._expanded[project.name] = result
        return result

    def _template_errors(self, project: ProjectConfig, index: int) -> list[str]:
        """Unknown templates, and the first parameter each template misses, as error lines.

        Checking this needs no expansion, so a layout loads without expanding
        every project; :meth:`_expand` then runs when a project's jobs are asked for.
        """
        errors: list[str] = []
        for t_index, ref in enumerate(project.template):
            path: KeyPath = ("projects", index, "template", t_index)
            template = self._templates.get(ref.name)
            if template is None:
                message = unknown_key_message(ref.name, self._templates).replace(
                    "unknown key", "unknown project-template", 1
                )
                errors.append(format_error(self.file, self.marks, (*path, "name"), message))
                continue
            missing = [p for p in self._params_of(template) if p not in ref.params]
            if missing:
                errors.append(
                    format_error(
                        self.file,
                        self.marks,
                        path,
                        f"project-template '{template.name}' needs parameter '{missing[0]}',"
                        f" which project '{project.name}' does not give",
                    )
                )
        return errors

    def _params_of(self, template: ProjectTemplate) -> list[str]:
        """The placeholders of ``template``'s job names but ``{name}``, in order of use."""
        cached = self._template_params.get(template.name)
        if cached is None:
            found: dict[str, None] = {}
            for trees in template.pipelines.values():
                for root in trees:
                    for tree in root.walk():
                        found.update(dict.fromkeys(_placeholders(tree.name)[1::2]))
            found.pop("name", None)
            cached = self._template_params[template.name] = list(found)
        return cached

    def jobs_for(self, project: str, pipeline: str) -> list[JobTree]:
        """The job trees ``project`` runs in ``pipeline`` (empty if none).

        :raises ConfigError: when a template it uses cannot be expanded.
        """
        config = self._projects.get(project)
        if config is None:
            return []
        return self._expand(config).get(pipeline, [])

    def job(self, name: str) -> JobConfig:
        """Effective settings of job ``name``: regex entries in file order, then the literal."""
        cached = self._job_cache.get(name)
        if cached is not None:
            return cached
        config = JobConfig(name=name)
        for definition in self._regex_jobs:
            if definition.matches(name):
                _apply(config, definition)
        literal = self._literal_jobs.get(name)
        if literal is not None:
            _apply(config, literal)
        self._job_cache[name] = config
        return config

    def projects_for_job(self, job_name: str) -> list[str]:
        """Every project that runs ``job_name`` in any pipeline, in file order."""
        found: list[str] = []
        for project in self.config.projects:
            trees = self._expand(project)
            if any(t.name == job_name for ts in trees.values() for root in ts for t in root.walk()):
                found.append(project.name)
        return found

    def all_job_names(self) -> list[str]:
        """Every job a project runs, then every literal ``jobs:`` entry, deduplicated."""
        names: dict[str, None] = {}
        for project in self.config.projects:
            for trees in self._expand(project).values():
                for root in trees:
                    for tree in root.walk():
                        names.setdefault(tree.name)
        for definition in self.config.jobs:
            if not definition.is_regex:
                names.setdefault(definition.name)
        return list(names)

    def counts(self) -> LayoutCounts:
        """Pipelines, projects, templates and ``jobs:`` entries as written, and
        :meth:`all_job_names` (every template expanded)."""
        config = self.config
        return LayoutCounts(
            pipelines=len(config.pipelines),
            projects=len(config.projects),
            templates=len(config.project_templates),
            job_entries=len(config.jobs),
            distinct_jobs=len(self.all_job_names()),
        )


class LayoutCounts(NamedTuple):
    """How big a layout is; ``str()`` gives the summary ``gatekeeper validate`` prints."""

    pipelines: int
    projects: int
    templates: int
    job_entries: int
    distinct_jobs: int

    def __str__(self) -> str:
        parts = [
            (self.pipelines, "pipeline"),
            (self.projects, "project"),
            (self.templates, "template"),
            (self.job_entries, "job entry"),
            (self.distinct_jobs, "distinct job"),
        ]
        return ", ".join(f"{n} {_plural(word, n)}" for n, word in parts)


def _plural(word: str, count: int) -> str:
    if count == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


@functools.lru_cache(maxsize=16384)
def _placeholders(name: str) -> tuple[str, ...]:
    """``gate-{name}-pep8`` → ``("gate-", "name", "-pep8")``: text and keys alternate.

    Cached: every project using a template fills the same names.
    """
    return tuple(_PLACEHOLDER.split(name))


def _filler(params: dict[str, str]) -> Callable[[str], str]:
    """A function filling ``{placeholders}`` in a job name from ``params``, which has
    them all (:meth:`Layout._template_errors` made sure)."""

    def fill(name: str) -> str:
        parts = _placeholders(name)
        if len(parts) == 1:
            return name
        out = [parts[0]]
        for index in range(1, len(parts), 2):
            out.append(params[parts[index]])
            out.append(parts[index + 1])
        return "".join(out)

    return fill


# ---------------------------------------------------------------------------
# Loading

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


def _modernize(data: dict[str, Any], marks: Marks, file: Path) -> None:
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


def _duplicates(items: list[Any], section: str, what: str, file: Path, marks: Marks) -> list[str]:
    errors: list[str] = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in first:
            line = marks.get((section, first[item.name], "name"), 1)
            errors.append(
                format_error(
                    file,
                    marks,
                    (section, index, "name"),
                    f"duplicate {what} '{item.name}' (first defined at line {line})",
                )
            )
        else:
            first[item.name] = index
    return errors


def _load_functions(config: LayoutFile, file: Path, marks: Marks) -> dict[str, Callable[..., Any]]:
    functions: dict[str, Callable[..., Any]] = {}
    errors: list[str] = []
    for index, include in enumerate(config.includes):
        path = (file.parent / include.python_file).resolve()
        where: KeyPath = ("includes", index, "python-file")
        if not path.is_file():
            errors.append(
                format_error(
                    file,
                    marks,
                    where,
                    f"included file {include.python_file} not found (looked for {path}); "
                    "run `gatekeeper validate --no-includes` to check the rest of the layout",
                )
            )
            continue
        try:
            spec = importlib.util.spec_from_file_location(
                f"gatekeeper_layout_include_{index}_{path.stem}", path
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:  # a user's file may raise anything at import
            errors.append(format_error(file, marks, where, f"cannot load {path}: {exc!r}"))
            continue
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and not name.startswith("_"):
                functions[name] = obj
    if errors:
        raise ConfigError(errors)
    return functions


def _check(layout: Layout, marks: Marks, file: Path, includes: bool) -> list[str]:
    """What pydantic cannot see: duplicates and cross references."""
    config = layout.config
    errors = [
        *_duplicates(config.pipelines, "pipelines", "pipeline", file, marks),
        *_duplicates(
            config.project_templates, "project-templates", "project-template", file, marks
        ),
        *_duplicates(config.jobs, "jobs", "job", file, marks),
        *_duplicates(config.projects, "projects", "project", file, marks),
    ]
    pipeline_names = [p.name for p in config.pipelines]
    sections: list[tuple[str, list[tuple[type[BaseModel], dict[str, list[JobTree]]]]]] = [
        ("project-templates", [(type(t), t.pipelines) for t in config.project_templates]),
        ("projects", [(type(p), p.pipelines) for p in config.projects]),
    ]
    for section, items in sections:
        for index, (kind, trees) in enumerate(items):
            for key in trees:
                if key not in pipeline_names:
                    message = unknown_key_message(key, [*pipeline_names, *model_keys(kind)])
                    message = message.replace("unknown key", "unknown key or pipeline", 1)
                    if suggest(str(key), [*pipeline_names, *model_keys(kind)]) is None:
                        known = ", ".join(pipeline_names) or "none"
                        message += f" (pipelines: {known})"
                    errors.append(format_error(file, marks, (section, index, key), message))
    for index, project in enumerate(config.projects):
        errors.extend(layout._template_errors(project, index))
    if includes:
        for index, job in enumerate(config.jobs):
            fn = job.parameter_function
            if fn is not None and fn not in layout.functions:
                if config.includes:
                    message = unknown_key_message(fn, layout.functions).replace(
                        "unknown key", "unknown function", 1
                    )
                else:
                    message = f"unknown function '{fn}': no 'includes:' python file defines it"
                errors.append(
                    format_error(file, marks, ("jobs", index, "parameter-function"), message)
                )
    return errors


def _line_of(error: str) -> int:
    match = re.search(r":(\d+): ", error)
    return int(match.group(1)) if match else 0


def load_layout(path: Path, includes: bool = True) -> Layout:
    """Read, modernise, validate and cross-check ``path``.

    With ``includes=False`` the ``includes:`` python files are neither loaded
    nor required (``parameter-function`` names are then not checked).

    :raises ConfigError: with one ``file:line: key.path: message`` line per problem.
    """
    data, marks = yamlmarks.load(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:{marks.get((), 1)}: a layout must be a mapping (pipelines, jobs, "
            f"projects...), got {describe(data)}"
        )
    _modernize(data, marks, path)
    config = validate(LayoutFile, data, marks, path, by_name=False)
    functions = _load_functions(config, path, marks) if includes else {}
    layout = Layout(config, path, marks, functions)
    errors = _check(layout, marks, path, includes)
    if errors:
        raise ConfigError(sorted(errors, key=_line_of))
    log.info(
        "loaded layout %s: %d pipelines, %d projects, %d job entries",
        path,
        len(config.pipelines),
        len(config.projects),
        len(config.jobs),
    )
    return layout


def validate_layout_file(path: Path, includes: bool = True) -> list[str]:
    """Every problem with ``path`` as error lines; empty when it loads."""
    try:
        load_layout(path, includes=includes)
    except ConfigError as exc:
        return list(exc.errors)
    return []
