"""Fuzz: a layout file, whatever it says, loads or is refused with
ConfigError (file, line, key); nothing else escapes load_layout."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.errors import ConfigError
from tests.fuzz.shapes import TESTDATA, keyed_values, mutated

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
REPO = Path(__file__).resolve().parents[2]

#: The keys a layout uses, at any depth.
LAYOUT_KEYS = [
    "pipelines", "jobs", "projects", "project-templates", "includes", "python-file",
    "name", "manager", "source", "trigger", "gerrit", "timer", "zuul", "event",
    "approval", "comment", "branch", "ref", "username", "time", "require", "reject",
    "success", "failure", "start", "merge-failure", "verified", "submit",
    "window", "window-floor", "precedence", "template", "check", "gate",
    "voting", "files", "skip-if", "logs", "node", "run", "timeout", "attempts",
    "merge-mode", "queue-name", "dequeue-on-new-patchset", "parameter-function",
]  # fmt: skip


def originals() -> list[dict[str, Any]]:
    found = [yaml.safe_load((REPO / "layout.yaml").read_text())]
    fixture = TESTDATA / "layouts" / "zuul-fixture-2017.yaml"
    if fixture.exists():
        found.append(yaml.safe_load(fixture.read_text()))
    return found


def check(tmp_path: Path, text: str) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        layout = load_layout(path, includes=False)
    except ConfigError as exc:
        assert exc.errors and all(line.startswith(f"{path}:") for line in exc.errors)
        return
    assert isinstance(layout, Layout)


@SETTINGS
@given(st.data())
def test_mutated_real_layouts(tmp_path: Path, data: st.DataObject) -> None:
    layout = data.draw(mutated(originals()))
    check(tmp_path, yaml.safe_dump(layout, allow_unicode=True))


@SETTINGS
@given(st.dictionaries(st.sampled_from(LAYOUT_KEYS), keyed_values(LAYOUT_KEYS), max_size=5))
def test_layouts_of_any_shape(tmp_path: Path, layout: dict[str, Any]) -> None:
    check(tmp_path, yaml.safe_dump(layout, allow_unicode=True))


@SETTINGS
@given(st.text(max_size=400))
def test_any_text(tmp_path: Path, text: str) -> None:
    check(tmp_path, text)


HOSTILE_YAML = {
    "deep flow": "[" * 5000 + "]" * 5000,
    "deep block": "".join("  " * i + "- \n" for i in range(3000)),
    "python tag": "!!python/object/apply:os.system ['true']\n",
    "huge integer": "jobs: [{name: x, timeout: " + "9" * 5000 + "}]\n",
    "cycle": "jobs: &a [{name: x, tags: *a}]\n",
    "cycle in extra keys": "jobs:\n  - name: x\n    swift: &a\n      - name: y\n        z: *a\n",
    "set": "jobs: !!set {a, b}\n",
    "binary": "jobs: !!binary aGVsbG8=\n",
    "timestamp key": "2001-12-14: x\n",
    "merge of a scalar": "jobs: [{<<: 1, name: x}]\n",
}


@pytest.mark.parametrize("text", HOSTILE_YAML.values(), ids=HOSTILE_YAML.keys())
def test_hostile_yaml(tmp_path: Path, text: str) -> None:
    check(tmp_path, text)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=2, max_value=12), st.integers(min_value=2, max_value=12))
def test_aliases_of_aliases_are_bounded(width: int, depth: int) -> None:
    """A "billion laughs": each level an alias list of the one before. The
    load must end soon whatever the expansion (it was width ** depth)."""
    lines = ["a0: &a0 [x]"]
    for level in range(1, depth):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append(f"jobs: [{{name: bomb, tags: *a{depth - 1}}}]")
    with tempfile.TemporaryDirectory() as tmp:
        check(Path(tmp), "\n".join(lines) + "\n")
