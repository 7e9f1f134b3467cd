"""The shared Zuul layouts load whole: counts checked against a plain walk of the raw YAML.

The walk below is deliberately its own small code (``yaml.safe_load``, dicts
and lists, ``str.format`` for template parameters), not the loader's, so the
two can only agree if the loader dropped nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.config.layout import LayoutCounts, load_layout

REPO = Path(__file__).resolve().parents[2]
LAYOUTS = REPO.parent / "shared" / "testdata" / "layouts"
OPENSTACK = "openstack-project-config-2015.yaml"
# Whether to load each layout's includes: the python files are not shipped
# with OpenStack's layout nor with the 2017 fixture.
INCLUDES = {
    OPENSTACK: False,
    "zuul-fixture-2017.yaml": False,
    "zuul-fixture-2012.yaml": True,
}
# Keys of a project entry that are not pipelines.
PROJECT_KEYS = {"name", "template", "merge-mode"}


@pytest.fixture
def shared_layouts() -> Path:
    if not LAYOUTS.is_dir():
        pytest.skip(f"{LAYOUTS} is absent (shared test data comes with the project workspace)")
    return LAYOUTS


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gatekeeper.config.layout")


def job_names(tree: Any) -> Iterator[str]:
    """Every job name in a job tree as written: names, lists, ``{parent: children}``."""
    if isinstance(tree, str):
        yield tree
    elif isinstance(tree, list):
        for item in tree:
            yield from job_names(item)
    elif isinstance(tree, dict):
        for parent, children in tree.items():
            yield parent
            yield from job_names(children)


def raw_counts(path: Path) -> LayoutCounts:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    pipelines = data.get("pipelines") or data.get("queues") or []
    templates = {t["name"]: t for t in data.get("project-templates") or []}
    projects = data.get("projects") or []
    entries = data.get("jobs") or []
    names: set[str] = set()
    for project in projects:
        short = project["name"].split("/")[-1]
        for ref in project.get("template") or []:
            params = {key: str(value) for key, value in ref.items()}
            params["name"] = short
            for key, tree in templates[ref["name"]].items():
                if key != "name":
                    names.update(name.format(**params) for name in job_names(tree))
        for key, tree in project.items():
            if key not in PROJECT_KEYS:
                names.update(job_names(tree))
    names.update(e["name"] for e in entries if not e["name"].startswith("^"))
    return LayoutCounts(len(pipelines), len(projects), len(templates), len(entries), len(names))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(INCLUDES), ids=sorted(INCLUDES))
def test_counts_match_a_plain_walk_of_the_yaml(shared_layouts: Path, name: str) -> None:
    path = shared_layouts / name
    counts = load_layout(path, includes=INCLUDES[name]).counts()
    assert counts == raw_counts(path)


@pytest.mark.timeout(60)
def test_openstack_counts_are_the_known_ones(shared_layouts: Path) -> None:
    raw = raw_counts(shared_layouts / OPENSTACK)
    assert raw[:4] == (15, 804, 55, 363)
    # Far more jobs run than are configured: templates fan out per project.
    assert raw.distinct_jobs > 1000


@pytest.mark.timeout(60)
def test_validate_prints_the_counts(shared_layouts: Path) -> None:
    path = shared_layouts / OPENSTACK
    result = CliRunner().invoke(main, ["validate", "--no-includes", str(path)])
    assert result.exit_code == 0, result.output
    distinct = raw_counts(path).distinct_jobs
    counts, *timers = result.output.splitlines()
    assert counts == (
        f"{path}: OK (15 pipelines, 804 projects, 55 templates, 363 job entries, "
        f"{distinct} distinct jobs)"
    )
    # Then when each timer fires next (the date depends on today).
    assert [line.partition(" next fires ")[0] for line in timers] == [
        "  periodic: timer '0 6 * * *'",
        "  periodic-stable: timer '1 6 * * *'",
        "  periodic-qa: timer '2 6 * * *'",
    ]


@pytest.mark.timeout(30)
def test_validate_counts_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text(
        "pipelines:\n"
        "  - name: check\n"
        "    manager: independent\n"
        "jobs:\n"
        "  - name: unit\n"
        "projects:\n"
        "  - name: org/a\n"
        "    check: [unit]\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    expected = "1 pipeline, 1 project, 0 templates, 1 job entry, 1 distinct job"
    assert result.output == f"{path}: OK ({expected})\n"


@pytest.mark.timeout(30)
def test_validate_with_includes_fails_without_their_python_file(shared_layouts: Path) -> None:
    path = shared_layouts / OPENSTACK
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "openstack_functions.py" in result.output and "OK" not in result.output
