"""``layout.yaml`` loaded: read, modernised, validated, cross-checked, indexed.

:func:`load_layout` reads the file with its line marks
(:mod:`~gatekeeper.config.yamlmarks`), rewrites 2012 spellings
(:mod:`~gatekeeper.config.legacy`), validates it against the schema
(:mod:`~gatekeeper.config.layout_schema`), then checks what pydantic cannot
see (duplicates, cross references, includes). :class:`Layout` is the result:
the look-ups the scheduler needs, read-only once built. The schema's own
names (``PipelineConfig``, ``JobTree``, ...) are imported from
:mod:`~gatekeeper.config.layout_schema`, their one home.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from gatekeeper.config import yamlmarks
from gatekeeper.config.layout_schema import (
    JobConfig,
    JobDefinition,
    JobTree,
    LayoutFile,
    PipelineConfig,
    ProjectConfig,
    ProjectTemplate,
)
from gatekeeper.config.legacy import modernize
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
from gatekeeper.model.names import log_glob_problem, project_name_problem
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

__all__ = [
    "Layout",
    "LayoutCounts",
    "load_layout",
    "validate_layout_file",
]

# A job's effective settings layer every matching ``jobs:`` entry (see Layout.job).
_JOB_FIELDS = [n for n in JobDefinition.model_fields if n != "name"]


def _apply(config: JobConfig, definition: JobDefinition) -> None:
    for name in _JOB_FIELDS:
        value = getattr(definition, name)
        if value is None:
            continue
        if name == "tags":
            config.tags = list(dict.fromkeys([*config.tags, *value]))
        elif name == "swift":
            # Targets layer by name, as Zuul v2.5 kept them.
            targets = {t.name: t for t in [*config.swift, *value]}
            config.swift = list(targets.values())
        else:
            setattr(config, name, value)


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
    for index, pipeline in enumerate(config.pipelines):
        for number, zuul in enumerate(pipeline.trigger.zuul):
            for pattern in zuul.pipeline:
                # A filter that reads as a plain name must name a pipeline,
                # or the trigger never fires.
                name = pattern.pattern
                if re.fullmatch(r"[\w.-]+", name) and name not in pipeline_names:
                    message = unknown_key_message(name, pipeline_names)
                    where = ("pipelines", index, "trigger", "zuul", number, "pipeline")
                    message = message.replace("unknown key", "unknown pipeline", 1)
                    errors.append(format_error(file, marks, where, message))
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
        problem = project_name_problem(project.name)
        if problem is not None:
            errors.append(
                format_error(
                    file,
                    marks,
                    ("projects", index, "name"),
                    f"project name '{shown(project.name, 100)}' {problem}",
                )
            )
        errors.extend(layout._template_errors(project, index))
    for index, job in enumerate(config.jobs):
        for number, glob in enumerate(job.logs or []):
            problem = log_glob_problem(glob)
            if problem is not None:
                errors.append(
                    format_error(
                        file,
                        marks,
                        ("jobs", index, "logs", number),
                        f"log glob '{shown(glob, 100)}' {problem}",
                    )
                )
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
    modernize(data, marks, path)
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
