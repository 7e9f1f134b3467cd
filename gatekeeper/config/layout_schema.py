"""The schema of ``layout.yaml``: pipelines, jobs, project templates and projects.

The models follow Zuul v2's layout so existing layouts load unchanged; each
model forbids unknown keys (reported with a "did you mean"), and every regex
is compiled at load time so a broken one is reported with its file, line and
key path instead of failing on the first matching event.

Label names inside approvals keep the layout's spelling: turning them into
Gerrit's spelling (and matching case-insensitively) is the scheduler's job.

The models see the file after :mod:`gatekeeper.config.legacy` rewrote its
2012 spellings; :mod:`gatekeeper.config.layout` validates a file against
:class:`LayoutFile` and indexes the result.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
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

from gatekeeper.config.cron import cron_problem
from gatekeeper.config.loader import describe, model_keys, unknown_key_message
from gatekeeper.config.yamlmarks import KeyPath
from gatekeeper.model.gerrit_vocabulary import KNOWN_TYPES
from gatekeeper.model.patterns import PLACEHOLDERS, pattern_problem

__all__ = [
    "DEFAULT_FAILURE_MESSAGE",
    "DEFAULT_MERGE_FAILURE_MESSAGE",
    "DEFAULT_SUCCESS_MESSAGE",
    "ApprovalRequirement",
    "GerritAction",
    "GerritTrigger",
    "IncludeSpec",
    "JobConfig",
    "JobDefinition",
    "JobTree",
    "LayoutFile",
    "PipelineConfig",
    "PipelineReject",
    "PipelineRequire",
    "ProjectConfig",
    "ProjectTemplate",
    "Reporter",
    "SkipIf",
    "SmtpReporter",
    "SwiftTarget",
    "TemplateRef",
    "TimerTrigger",
    "Triggers",
    "ZuulTrigger",
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


def _not_acted_on(data: Any, refused: Mapping[str, str]) -> None:
    """Refuse the first key of ``data`` that Zuul v2.5 took but gatekeeper
    cannot act on (``refused``: key -> why), rather than accept it and do nothing.

    :raises PydanticCustomError: naming the key, so the error has its line.
    """
    if not isinstance(data, dict):
        return
    for key in data:
        if key in refused:
            raise PydanticCustomError(
                "not_acted_on",
                "'{key}' is not supported: {why}",
                {"key": key, "why": refused[key], "path": (key,)},
            )


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


# Zuul v2.5 matched these against the vote's author and date; gatekeeper
# reads a change's votes as label -> username -> value, without either.
_NO_EMAIL = "gatekeeper knows a vote's username, not its email; match the voter with 'username'"
_NO_AGE = "gatekeeper does not know when a vote was cast, so it cannot check a vote's age"
_UNCHECKABLE_APPROVAL = {
    "email": _NO_EMAIL,
    "email-filter": _NO_EMAIL,
    "older-than": _NO_AGE,
    "newer-than": _NO_AGE,
}


class ApprovalRequirement(_Model):
    """One entry of ``require: approval:`` / ``require-approval:``.

    Every key that is not one of the fields below is a label name; its value
    is one accepted vote or a list of them.
    """

    username: Regex | None = None
    # Zuul's keys, kept as fields so none is ever read as a label name; a
    # layout giving one is refused (_UNCHECKABLE_APPROVAL says why).
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
        _not_acted_on(data, _UNCHECKABLE_APPROVAL)
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


def _labelled(value: list[ApprovalRequirement]) -> list[ApprovalRequirement]:
    for index, requirement in enumerate(value):
        if not requirement.labels:
            raise PydanticCustomError(
                "approval_label",
                "an approval must name a label and its votes (e.g. verified: [-1, -2]): "
                "gatekeeper matches approvals by label, so one without any would match "
                "every change (or, in a reject, none)",
                {"path": (index,)},
            )
    return value


# ``require-approval`` / ``reject-approval`` (triggers) and ``approval``
# (pipeline requirements): one requirement or a list of them, each naming a label.
ApprovalRequirements = Annotated[
    list[ApprovalRequirement], BeforeValidator(_to_list), AfterValidator(_labelled)
]


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
    require_approval: ApprovalRequirements = Field(default_factory=list, alias="require-approval")
    reject_approval: ApprovalRequirements = Field(default_factory=list, alias="reject-approval")

    @field_validator("event")
    @classmethod
    def _events(cls, value: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
        return _check_events(value, _GERRIT_EVENTS, "Gerrit event")


class TimerTrigger(_Model):
    """``trigger: timer:``: a cron line (5 fields, or 6 with seconds)."""

    time: str

    @field_validator("time")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ZuulTrigger(_Model):
    """``trigger: zuul:``: events gatekeeper itself emits (e.g. project-change-merged)."""

    event: RegexList
    pipeline: RegexList = Field(default_factory=list)
    require_approval: ApprovalRequirements = Field(default_factory=list, alias="require-approval")
    reject_approval: ApprovalRequirements = Field(default_factory=list, alias="reject-approval")

    @field_validator("event")
    @classmethod
    def _events(cls, value: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
        return _check_events(value, _ZUUL_EVENTS, "gatekeeper event")

    @model_validator(mode="after")
    def _pipeline_filter(self) -> ZuulTrigger:
        # Only parent-change-enqueued names a pipeline: on any other event
        # the filter would keep the trigger from ever firing.
        if self.pipeline and not any(p.match("parent-change-enqueued") for p in self.event):
            raise PydanticCustomError(
                "pipeline",
                "'pipeline' filters parent-change-enqueued events only; "
                "this trigger's events never name a pipeline",
                {"path": ("pipeline",)},
            )
        return self


class Triggers(_Model):
    gerrit: Annotated[list[GerritTrigger], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    timer: Annotated[list[TimerTrigger], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    zuul: Annotated[list[ZuulTrigger], BeforeValidator(_none_to_list)] = Field(default_factory=list)


class PipelineRequire(_Model):
    """``require:``: what a change must have to enter a pipeline."""

    approval: ApprovalRequirements = Field(default_factory=list)
    open: bool | None = None
    current_patchset: bool | None = Field(default=None, alias="current-patchset")
    status: StrList = Field(default_factory=list)


_REJECT_ONLY_APPROVAL = "Zuul v2.5's reject: takes only 'approval'; say it under require:"


class PipelineReject(_Model):
    """``reject:``: the votes that keep a change out of a pipeline."""

    approval: ApprovalRequirements = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _only_approval(cls, data: Any) -> Any:
        _not_acted_on(
            data,
            dict.fromkeys(["open", "current-patchset", "status"], _REJECT_ONLY_APPROVAL),
        )
        return data


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
        if isinstance(vote, bool) and key != "submit":
            # Zuul v2.5 passed any flag on to `gerrit review --<flag>`.
            raise PydanticCustomError(
                "gerrit_action",
                "'{key}: {vote}' is not supported: a gerrit reporter votes labels and may "
                "'submit: true'; gatekeeper passes no other option to gerrit review",
                {"key": key, "vote": describe(vote), "path": (key,)},
            )
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
    reject: PipelineReject = Field(default_factory=PipelineReject)
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


#: What a ``swift:`` target's container and logserver prefix may name (Zuul
#: v2.5 filled them from the change and the job when it launched a build).
SWIFT_PLACEHOLDERS = frozenset(
    {*(p for p in PLACEHOLDERS if p.startswith("change.")), "pipeline.name", "job.name"}
)


class SwiftTarget(_Model):
    """One ``swift:`` target of a job: where its build may upload, signed as
    the site's ``swift:`` section says (``SWIFT_<name>_*`` build parameters).

    Zuul v2.5's keys, each in its dash and its older underscore spelling;
    unset ones take the site's ``default-*`` values.
    """

    name: str
    container: str | None = None
    expiry: int | None = Field(default=None, gt=0)
    max_file_size: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("max-file-size", "max_file_size")
    )
    max_file_count: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("max-file-count", "max_file_count")
    )
    logserver_prefix: str | None = Field(
        default=None, validation_alias=AliasChoices("logserver-prefix", "logserver_prefix")
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # It becomes part of an environment variable's name: SWIFT_<name>_URL.
        if not re.fullmatch(r"[A-Za-z0-9_]+", value):
            raise ValueError(
                f"swift target name {value!r} must be letters, digits and '_' "
                "(it names the SWIFT_<name>_* build parameters)"
            )
        return value

    @field_validator("container", "logserver_prefix")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        problem = None if value is None else pattern_problem(value, SWIFT_PLACEHOLDERS)
        if problem is not None:
            raise ValueError(problem)
        return value


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

    @field_validator("failure_pattern", "success_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        problem = None if value is None else pattern_problem(value)
        if problem is not None:
            raise ValueError(problem)
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
