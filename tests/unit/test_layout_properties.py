"""Round trip: random valid layouts, dumped to YAML and loaded, come back as generated.

The layouts are drawn from the models' own vocabulary: pipelines with Gerrit,
timer and zuul triggers, reporters and requirements; ``jobs:`` entries with
literal and regex names; templates whose job names take parameters; projects
with templates and job trees. What the loader should make of them (defaults,
one value standing for a list, regex entries applied before literal ones,
templates expanded and merged with the project's own trees) is worked out
here from the generated data, separately from the loader's code.

And junk (random text, random YAML, valid layouts with one part replaced by
junk) never gets anything out of the loader but a ConfigError.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.layout_schema import (
    DEFAULT_FAILURE_MESSAGE,
    DEFAULT_SUCCESS_MESSAGE,
    ApprovalRequirement,
    GerritTrigger,
    JobConfig,
    JobDefinition,
    JobTree,
    PipelineConfig,
    PipelineRequire,
    Reporter,
)
from gatekeeper.errors import ConfigError
from gatekeeper.gerrit.events import KNOWN_TYPES

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# Vocabulary

FIRST = string.ascii_lowercase
REST = string.ascii_lowercase + string.digits + "-"
WORD = st.builds(lambda a, b: a + b, st.sampled_from(FIRST), st.text(REST, max_size=8))
TEXT = st.text(string.ascii_letters + string.digits + " .,:;-_'\"#!?{}[]()/\n", max_size=40)
# Keys a project or template entry has besides its pipelines.
RESERVED = {"name", "template", "merge-mode"}
PIPELINE_NAME = WORD.filter(lambda word: word not in RESERVED)
LABELS = ["code-review", "verified", "workflow", "Approved"]
VOTE = st.integers(-2, 2)
REGEX = st.sampled_from(
    ["^master$", "^stable/.*$", ".*", r"^refs/tags/[0-9.]+$", "(?i)recheck", r"^feature/\w+$"]
)
EVENTS = [*sorted(KNOWN_TYPES), "comment-added|patchset-created"]
ZUUL_EVENTS = ["parent-change-enqueued", "project-change-merged"]
MANAGERS = {
    "independent": "independent",
    "dependent": "dependent",
    "IndependentPipelineManager": "independent",
    "DependentPipelineManager": "dependent",
}
REPORTERS = ["start", "success", "failure", "merge-failure", "disabled"]


def one_or_list(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Zuul lets one value stand for a one-item list: generate both forms."""
    return st.one_of(strategy, st.lists(strategy, min_size=1, max_size=3))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


def cron() -> st.SearchStrategy[str]:
    fields = [
        st.sampled_from(["*", "0", "30", "*/15", "0-30/10", "5,35", "59"]),
        st.sampled_from(["*", "0", "6", "0-23/2", "23"]),
        st.sampled_from(["*", "1", "1-15", "31", "last"]),
        st.sampled_from(["*", "1", "jan", "6-12", "dec"]),
        st.sampled_from(["*", "0", "mon-fri", "sun", "1,3,5"]),
    ]
    five = st.tuples(*fields).map(" ".join)
    return st.one_of(five, st.tuples(five, st.sampled_from(["0", "30"])).map(" ".join))


APPROVAL_REQUIREMENT = merged(
    st.dictionaries(st.sampled_from(LABELS), one_or_list(VOTE), min_size=1, max_size=2),
    st.fixed_dictionaries(
        {},
        # email, older-than and newer-than are refused: gatekeeper cannot check them.
        optional={"username": REGEX},
    ),
)
GERRIT_TRIGGER = st.fixed_dictionaries(
    {"event": one_or_list(st.sampled_from(EVENTS))},
    optional={
        "branch": one_or_list(REGEX),
        "ref": one_or_list(REGEX),
        "comment": one_or_list(REGEX),
        "email": one_or_list(REGEX),
        "username": one_or_list(REGEX),
        "ignore-deletes": st.booleans(),
        "approval": st.lists(
            st.dictionaries(st.sampled_from(LABELS), VOTE, min_size=1, max_size=2), max_size=2
        ),
        "require-approval": st.lists(APPROVAL_REQUIREMENT, max_size=2),
        "reject-approval": st.lists(APPROVAL_REQUIREMENT, max_size=2),
    },
)
TRIGGERS = st.fixed_dictionaries(
    {},
    optional={
        "gerrit": st.lists(GERRIT_TRIGGER, min_size=1, max_size=3),
        "timer": st.lists(st.fixed_dictionaries({"time": cron()}), min_size=1, max_size=2),
        # Only parent-change-enqueued names a pipeline: a 'pipeline' filter
        # on a trigger without it is refused (it could never fire).
        "zuul": st.lists(
            st.one_of(
                st.fixed_dictionaries({"event": one_or_list(st.sampled_from(ZUUL_EVENTS))}),
                st.fixed_dictionaries(
                    {"event": one_or_list(st.just("parent-change-enqueued"))},
                    optional={"pipeline": one_or_list(REGEX)},
                ),
            ),
            min_size=1,
            max_size=2,
        ),
    },
)
REPORTER = st.fixed_dictionaries(
    {},
    optional={
        "gerrit": merged(
            st.dictionaries(st.sampled_from(LABELS), VOTE, max_size=2),
            st.fixed_dictionaries({}, optional={"submit": st.booleans()}),
        ),
        "smtp": st.fixed_dictionaries(
            {},
            optional={
                "to": WORD.map(lambda w: f"{w}@example.org"),
                "from": WORD.map(lambda w: f"{w}@example.org"),
                "subject": TEXT,
            },
        ),
    },
)
REQUIRE = st.fixed_dictionaries(
    {},
    optional={
        "approval": st.lists(APPROVAL_REQUIREMENT, min_size=1, max_size=2),
        "open": st.booleans(),
        "current-patchset": st.booleans(),
        "status": one_or_list(st.sampled_from(["NEW", "MERGED", "ABANDONED"])),
    },
)
# Zuul v2.5's reject: takes approvals only.
REJECT = st.fixed_dictionaries(
    {}, optional={"approval": st.lists(APPROVAL_REQUIREMENT, min_size=1, max_size=2)}
)


def pipeline(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": st.just(name), "manager": st.sampled_from(sorted(MANAGERS))},
        optional={
            "description": TEXT,
            "source": st.just("gerrit"),
            "precedence": st.sampled_from(["high", "normal", "low"]),
            "require": REQUIRE,
            "reject": REJECT,
            "trigger": TRIGGERS,
            **{key: REPORTER for key in REPORTERS},
            "success-message": TEXT,
            "failure-message": TEXT,
            "start-message": TEXT,
            "footer-message": TEXT,
            "dequeue-on-new-patchset": st.booleans(),
            "ignore-dependencies": st.booleans(),
            "window": st.integers(0, 50),
            "window-floor": st.integers(1, 5),
            "window-increase-type": st.sampled_from(["linear", "exponential"]),
            "window-increase-factor": st.integers(1, 4),
            "window-decrease-type": st.sampled_from(["linear", "exponential"]),
            "window-decrease-factor": st.integers(1, 4),
            "disable-after-consecutive-failures": st.integers(1, 5),
        },
    )


JOB_SETTINGS = {
    "queue-name": WORD,
    "failure-message": TEXT,
    "success-message": TEXT,
    "failure-pattern": st.just("{change.number}/{build.uuid}"),
    "hold-following-changes": st.booleans(),
    "voting": st.booleans(),
    "attempts": st.integers(1, 5),
    "mutex": WORD,
    "tags": one_or_list(WORD),
    "branch": one_or_list(REGEX),
    "files": one_or_list(REGEX),
    "skip-if": st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "project": REGEX,
                "branch": REGEX,
                "all-files-match-any": one_or_list(REGEX),
            },
        ),
        min_size=1,
        max_size=2,
    ),
    "parameter-function": WORD,
    "swift": st.lists(
        st.fixed_dictionaries(
            # A target's name is part of a variable's name: no '-'.
            {"name": WORD.map(lambda w: w.replace("-", "_"))},
            optional={"container": WORD},
        ),
        min_size=1,
        max_size=2,
    ),
    "node": WORD,
    "run": TEXT,
    "logs": one_or_list(st.sampled_from(["logs/**", "*.log", "out/"])),
    "timeout": st.integers(1, 10_000),
}
REGEX_TAILS = st.sampled_from([".*$", "-.*", "(-[a-z0-9]+)*$", "", "[a-z0-9-]*$"])


def regex_job_name(literal: list[str]) -> st.SearchStrategy[str]:
    """``^prefix`` and a tail; the prefix is often that of a literal job, so they layer."""
    prefixes = st.one_of(WORD, st.sampled_from(literal).map(lambda w: w[:2])) if literal else WORD
    return st.builds(lambda word, tail: "^" + re.escape(word) + tail, prefixes, REGEX_TAILS)


@st.composite
def job_trees(draw: st.DrawFn, names: st.SearchStrategy[str], depth: int = 2) -> list[Any]:
    """``[name, {name: [children]}, ...]`` as a layout writes job trees."""
    items: list[Any] = []
    for _ in range(draw(st.integers(0 if depth < 2 else 1, 3))):
        name = draw(names)
        if depth > 0 and draw(st.booleans()):
            items.append({name: draw(job_trees(names, depth - 1))})
        else:
            items.append(name)
    return items


PLACEHOLDERS = ["python", "suffix", "node"]
TEMPLATE_JOB = st.one_of(
    WORD,
    st.builds(lambda w: f"gate-{{name}}-{w}", WORD),
    st.builds(lambda w, p: f"{w}-{{{p}}}", WORD, st.sampled_from(PLACEHOLDERS)),
)


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(PIPELINE_NAME, min_size=1, max_size=4, unique=True))
    pipelines = [draw(pipeline(name)) for name in names]

    literal = draw(st.lists(WORD, max_size=4, unique=True))
    regexes = draw(st.lists(regex_job_name(literal), max_size=3, unique=True))
    job_names = draw(st.permutations([*literal, *regexes]))
    jobs = [
        {"name": name, **draw(st.fixed_dictionaries({}, optional=JOB_SETTINGS))}
        for name in job_names
    ]
    tree_name = st.one_of(WORD, st.sampled_from(literal)) if literal else WORD

    templates = []
    for name in draw(st.lists(WORD, max_size=3, unique=True)):
        template: dict[str, Any] = {"name": name}
        for pipeline_name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
            template[pipeline_name] = draw(job_trees(TEMPLATE_JOB))
        templates.append(template)

    projects = []
    for short in draw(st.lists(WORD, max_size=5, unique=True)):
        project: dict[str, Any] = {"name": f"{draw(WORD)}/{short}"}
        if templates and draw(st.booleans()):
            refs = []
            for template in draw(st.lists(st.sampled_from(templates), min_size=1, max_size=3)):
                ref: dict[str, Any] = {"name": template["name"]}
                for param in sorted(needed_params(template)):
                    ref[param] = draw(st.one_of(WORD, st.integers(0, 99)))
                refs.append(ref)
            project["template"] = refs
        if draw(st.booleans()):
            project["merge-mode"] = draw(st.sampled_from(["merge", "merge-resolve", "cherry-pick"]))
        for pipeline_name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            project[pipeline_name] = draw(job_trees(tree_name))
        projects.append(project)
    # Project names are unique: two "org/x" would be a duplicate project.
    seen: set[str] = set()
    projects = [p for p in projects if not (p["name"] in seen or seen.add(p["name"]))]

    layout: dict[str, Any] = {"pipelines": pipelines}
    for key, value in (("project-templates", templates), ("jobs", jobs), ("projects", projects)):
        if value or draw(st.booleans()):
            layout[key] = value
    return layout


def needed_params(template: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for key, trees in template.items():
        if key != "name":
            for name in tree_names(trees):
                found.update(re.findall(r"\{(\w+)\}", name))
    return found - {"name"}


def tree_names(trees: Any) -> list[str]:
    out: list[str] = []
    for item in trees or []:
        if isinstance(item, str):
            out.append(item)
        else:
            for name, children in item.items():
                out.append(name)
                out.extend(tree_names(children))
    return out


# ---------------------------------------------------------------------------
# What the loaded model should hold, worked out from the generated data

Trees = list[tuple[str, "Trees"]]


def listed(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def plain(value: Any) -> Any:
    """Patterns as their text, models as the keys they were given, recursively."""
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, BaseModel):
        dumped = value.model_dump(by_alias=True, exclude_unset=True, round_trip=True)
        return {k: plain(getattr(value, _field(type(value), k), dumped[k])) for k in dumped}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _field(model: type[BaseModel], key: str) -> str:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name
    return key


def requirement_view(req: ApprovalRequirement) -> dict[str, Any]:
    out: dict[str, Any] = dict(req.labels)
    for key in ("username", "email"):
        if getattr(req, key) is not None:
            out[key] = getattr(req, key).pattern
    for key in ("older-than", "newer-than"):
        value = getattr(req, key.replace("-", "_"))
        if value is not None:
            out[key] = value
    return out


def requirement_spec(spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"username", "email", "older-than", "newer-than"}
    return {k: v if k in meta else listed(v) for k, v in spec.items()}


def gerrit_trigger_view(t: GerritTrigger) -> dict[str, Any]:
    return {
        "event": plain(t.event),
        "branch": plain(t.branch),
        "ref": plain(t.ref),
        "comment": plain(t.comment),
        "email": plain(t.email),
        "username": plain(t.username),
        "ignore-deletes": t.ignore_deletes,
        "approval": t.approval,
        "require-approval": [requirement_view(r) for r in t.require_approval],
        "reject-approval": [requirement_view(r) for r in t.reject_approval],
    }


def gerrit_trigger_spec(spec: dict[str, Any]) -> dict[str, Any]:
    lists = ("event", "branch", "ref", "comment", "email", "username")
    return {
        **{key: listed(spec.get(key)) for key in lists},
        "ignore-deletes": spec.get("ignore-deletes", True),
        "approval": spec.get("approval", []),
        "require-approval": [requirement_spec(r) for r in spec.get("require-approval", [])],
        "reject-approval": [requirement_spec(r) for r in spec.get("reject-approval", [])],
    }


def reporter_view(r: Reporter | None) -> Any:
    if r is None:
        return None
    smtp = None if r.smtp is None else plain(r.smtp)
    return {"gerrit": r.gerrit, "smtp": smtp}


def reporter_spec(spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return None
    return {"gerrit": spec.get("gerrit"), "smtp": spec.get("smtp")}


def require_view(r: PipelineRequire) -> dict[str, Any]:
    return {
        "approval": [requirement_view(a) for a in r.approval],
        "open": r.open,
        "current-patchset": r.current_patchset,
        "status": r.status,
    }


def require_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "approval": [requirement_spec(a) for a in spec.get("approval", [])],
        "open": spec.get("open"),
        "current-patchset": spec.get("current-patchset"),
        "status": listed(spec.get("status")),
    }


PIPELINE_DEFAULTS = {
    "description": "",
    "source": "gerrit",
    "precedence": "normal",
    "success-message": DEFAULT_SUCCESS_MESSAGE,
    "failure-message": DEFAULT_FAILURE_MESSAGE,
    "start-message": None,
    "footer-message": None,
    "dequeue-on-new-patchset": True,
    "ignore-dependencies": False,
    "window": 20,
    "window-floor": 3,
    "window-increase-type": "linear",
    "window-increase-factor": 1,
    "window-decrease-type": "exponential",
    "window-decrease-factor": 2,
    "disable-after-consecutive-failures": None,
}


def pipeline_view(p: PipelineConfig) -> dict[str, Any]:
    return {
        "name": p.name,
        "manager": p.manager,
        **{key: getattr(p, _field(PipelineConfig, key)) for key in PIPELINE_DEFAULTS},
        "require": require_view(p.require),
        "reject": require_view(PipelineRequire(approval=p.reject.approval)),
        "gerrit": [gerrit_trigger_view(t) for t in p.trigger.gerrit],
        "timer": [t.time for t in p.trigger.timer],
        "zuul": [(plain(t.event), plain(t.pipeline)) for t in p.trigger.zuul],
        **{key: reporter_view(getattr(p, _field(PipelineConfig, key))) for key in REPORTERS},
    }


def pipeline_spec(spec: dict[str, Any]) -> dict[str, Any]:
    trigger = spec.get("trigger", {})
    return {
        "name": spec["name"],
        "manager": MANAGERS[spec["manager"]],
        **{key: spec.get(key, default) for key, default in PIPELINE_DEFAULTS.items()},
        "require": require_spec(spec.get("require", {})),
        "reject": require_spec(spec.get("reject", {})),
        "gerrit": [gerrit_trigger_spec(t) for t in trigger.get("gerrit", [])],
        "timer": [t["time"] for t in trigger.get("timer", [])],
        "zuul": [(listed(t["event"]), listed(t.get("pipeline"))) for t in trigger.get("zuul", [])],
        **{key: reporter_spec(spec.get(key)) for key in REPORTERS},
    }


def job_setting_spec(key: str, value: Any) -> Any:
    """A ``jobs:`` value as the model holds it (one value standing for a list)."""
    if key in ("tags", "branch", "files", "logs", "swift"):
        return listed(value)
    if key == "skip-if":
        return [
            {k: listed(v) if k == "all-files-match-any" else v for k, v in cond.items()}
            for cond in listed(value)
        ]
    return value


def effective_job(name: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Regex entries that match, in file order, then the literal entry; tags add up."""
    config = {f.name: plain(getattr(JobConfig(name=name), f.name)) for f in _job_fields()}
    regex = [j for j in jobs if j["name"].startswith("^") and re.match(j["name"], name)]
    literal = [j for j in jobs if j["name"] == name and not name.startswith("^")]
    for entry in [*regex, *literal]:
        for key, value in entry.items():
            if key == "name":
                continue
            field = _field(JobDefinition, key)
            wanted = job_setting_spec(key, value)
            if field == "tags":
                config["tags"] = list(dict.fromkeys([*config["tags"], *wanted]))
            elif field == "swift":
                # Targets layer by name.
                targets = {t["name"]: t for t in [*config["swift"], *wanted]}
                config["swift"] = list(targets.values())
            else:
                config[field] = wanted
    return config


def _job_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(JobConfig))


def job_view(layout: Layout, name: str) -> dict[str, Any]:
    job = layout.job(name)
    return {f.name: plain(getattr(job, f.name)) for f in _job_fields()}


def merge(target: dict[str, Any], additions: dict[str, Any]) -> None:
    for name, children in additions.items():
        merge(target.setdefault(name, {}), children)


def as_dict(trees: Any, fill: Callable[[str], str] = str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in trees or []:
        if isinstance(item, str):
            out.setdefault(fill(item), {})
        else:
            for name, children in item.items():
                merge(out.setdefault(fill(name), {}), as_dict(children, fill))
    return out


def ordered(trees: dict[str, Any]) -> Trees:
    return [(name, ordered(children)) for name, children in trees.items()]


def loaded_trees(trees: list[JobTree]) -> Trees:
    return [(t.name, loaded_trees(t.children)) for t in trees]


def expected_trees(spec: dict[str, Any], project: dict[str, Any], pipeline: str) -> Trees:
    templates = {t["name"]: t for t in spec.get("project-templates", [])}
    short = project["name"].split("/")[-1]
    result: dict[str, Any] = {}
    for ref in project.get("template", []):
        params = {k: str(v) for k, v in ref.items() if k != "name"}
        params["name"] = short

        def fill(job: str, params: dict[str, str] = params) -> str:
            for key, value in params.items():
                job = job.replace("{" + key + "}", value)
            return job

        merge(result, as_dict(templates[ref["name"]].get(pipeline), fill))
    merge(result, as_dict(project.get(pipeline)))
    return ordered(result)


# ---------------------------------------------------------------------------
# Tests


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gatekeeper.config.layout")


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


@pytest.mark.timeout(120)
@SETTINGS
@given(spec=layouts())
def test_a_generated_layout_loads_as_generated(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("layout") / "layout.yaml"
    path.write_text(dump(spec), encoding="utf-8")
    layout = load_layout(path, includes=False)

    assert [pipeline_view(p) for p in layout.pipelines] == [
        pipeline_spec(p) for p in spec["pipelines"]
    ]
    jobs = spec.get("jobs", [])
    assert [j.name for j in layout.config.jobs] == [j["name"] for j in jobs]
    for definition, entry in zip(layout.config.jobs, jobs, strict=True):
        for key, value in entry.items():
            held = plain(getattr(definition, _field(JobDefinition, key)))
            assert held == job_setting_spec(key, value), key
    templates = spec.get("project-templates", [])
    assert [t.name for t in layout.config.project_templates] == [t["name"] for t in templates]
    projects = spec.get("projects", [])
    assert layout.project_names == [p["name"] for p in projects]
    names: set[str] = set()
    for project in projects:
        loaded = layout.project(project["name"])
        assert loaded is not None
        assert loaded.merge_mode == project.get("merge-mode", "merge-resolve")
        for pipeline in layout.pipelines:
            got = loaded_trees(layout.jobs_for(project["name"], pipeline.name))
            assert got == expected_trees(spec, project, pipeline.name), pipeline.name
            names.update(
                name
                for tree in layout.jobs_for(project["name"], pipeline.name)
                for name in (t.name for t in tree.walk())
            )
    names.update(j["name"] for j in jobs if not j["name"].startswith("^"))
    assert sorted(layout.all_job_names()) == sorted(names)
    for name in [*sorted(names), "not-configured"]:
        assert job_view(layout, name) == effective_job(name, jobs), name


VOCABULARY = sorted(
    {
        "pipelines", "queues", "jobs", "projects", "project-templates", "includes",
        "name", "manager", "trigger", "gerrit", "timer", "zuul", "event", "approval",
        "require", "reject", "success", "failure", "start", "template", "check", "gate",
        "time", "branch", "files", "skip-if", "voting", "tags", "window", "submit",
        "verified", "code-review", "independent", "dependent", "^.*$", "{name}",
        "IndependentQueueManager", "patchset-uploaded", "comment-added", "python-file",
    }
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(VOCABULARY),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=5), st.integers(-2, 2)),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@st.composite
def spoiled_layouts(draw: st.DrawFn) -> Any:
    """A valid layout with one value replaced by junk, or one junk key added."""
    spec = draw(layouts())
    paths: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((node, key))
                collect(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                paths.append((node, index))
                collect(value)

    collect(spec)
    parent, key = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[key] = draw(JUNK)
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(VOCABULARY))] = draw(JUNK)
    else:
        parent.append(draw(JUNK))
    return spec


def loads_or_config_error(path: Path) -> None:
    try:
        load_layout(path, includes=False)
    except ConfigError as exc:
        assert exc.errors and all(e.startswith(str(path)) for e in exc.errors), exc.errors


@pytest.mark.timeout(120)
@SETTINGS
@given(data=st.one_of(JUNK, spoiled_layouts(), st.dictionaries(st.sampled_from(VOCABULARY), JUNK)))
def test_junk_yaml_raises_only_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: Any
) -> None:
    path = tmp_path_factory.mktemp("junk") / "layout.yaml"
    path.write_text(dump(data), encoding="utf-8")
    loads_or_config_error(path)


@pytest.mark.timeout(60)
@SETTINGS
@given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_junk_text_raises_only_config_error(
    tmp_path_factory: pytest.TempPathFactory, raw: str | bytes
) -> None:
    path = tmp_path_factory.mktemp("text") / "layout.yaml"
    if isinstance(raw, str):
        path.write_text(raw, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(raw)
    loads_or_config_error(path)
