"""yamlmarks builds data exactly as ``yaml.safe_load`` does, and knows every key's line."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.config import yamlmarks
from gatekeeper.errors import ConfigError

SAME_AS_SAFE_LOAD = {
    "scalars": "a: 1\nb: [1, 2.5, true, null, 2001-12-14, 0x1f, '3', ~, 1_000]\n",
    "merge": "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n  z: 4\n",
    "merge-list": "a: &a {p: 1}\nb: &b {p: 2, q: 2}\nc:\n  <<: [*a, *b]\n  r: 3\n",
    "alias": "x: &x [1, 2]\ny: *x\n",
    "set": "s: !!set {a, b}\n",
    "omap": "o: !!omap [a: 1, b: 2]\n",
    "binary": "k: !!binary aGVsbG8=\n",
    "explicit-str": "n: !!str 123\n",
    "int-keys": "1: one\n2.5: two and a half\nnull: none\n",
    "flow": "{a: [b, {c: d}], e: f}\n",
    "block-scalars": "a: |\n  line one\n  line two\nb: >\n  folded\n  text\n",
    "empty": "",
    "top-list": "- a\n- b\n",
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", SAME_AS_SAFE_LOAD.values(), ids=SAME_AS_SAFE_LOAD.keys())
def test_data_is_what_safe_load_makes(text: str) -> None:
    data, _ = yamlmarks.load_text(text, "f.yaml")
    assert data == yaml.safe_load(text)


@pytest.mark.timeout(10)
def test_an_alias_is_the_anchored_object_and_cycles_survive() -> None:
    data, marks = yamlmarks.load_text("x: &x [1, *x]\ny: *x\n", "f.yaml")
    assert data["y"] is data["x"] and data["x"][1] is data["x"]
    # The alias's items are marked under its own path, at the anchor's lines.
    assert marks[("y", 0)] == 1


@pytest.mark.timeout(10)
def test_marks_of_merged_keys_point_at_the_mapping_that_wins() -> None:
    text = "a: &a\n  p: 1\n  q: 1\nb: &b\n  p: 2\nc:\n  <<: [*a, *b]\n  r: 3\n"
    data, marks = yamlmarks.load_text(text, "f.yaml")
    assert data["c"] == {"p": 1, "q": 1, "r": 3}
    assert marks[("c", "p")] == 2 and marks[("c", "q")] == 3 and marks[("c", "r")] == 8


@pytest.mark.timeout(10)
def test_a_timestamp_is_constructed_by_pyyaml() -> None:
    data, _ = yamlmarks.load_text("when: 2015-06-01 10:00:00\n", "f.yaml")
    assert data == {"when": datetime.datetime(2015, 6, 1, 10, 0)}


ERRORS = {
    "duplicate-nested": (
        "a:\n  - b: 1\n    b: 2\n",
        "f.yaml:3: a[0]: duplicate key 'b' (first defined at line 2)",
    ),
    "duplicate-top": (
        "a: 1\nb: 2\na: 3\n",
        "f.yaml:3: duplicate key 'a' (first defined at line 1)",
    ),
    "unhashable-key": ("? [1, 2]\n: 3\n", "f.yaml:1: YAML syntax error: while constructing"),
    "bad-merge": ("a:\n  <<: 3\n", "f.yaml:2: YAML syntax error: while constructing a mapping"),
    "unknown-tag": ("a: !custom x\n", "f.yaml:1: YAML syntax error: could not determine"),
    "undefined-alias": ("a: *nowhere\n", "f.yaml:1: YAML syntax error: found undefined alias"),
    "two-documents": ("a: 1\n---\nb: 2\n", "f.yaml:2: YAML syntax error: expected a single"),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("text", "start"), ERRORS.values(), ids=ERRORS.keys())
def test_errors_are_config_errors_with_a_line(text: str, start: str) -> None:
    with pytest.raises(ConfigError) as info:
        yamlmarks.load_text(text, "f.yaml")
    assert str(info.value).startswith(start)


DATA = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4),
    ),
    max_leaves=25,
)


@pytest.mark.timeout(60)
@settings(max_examples=80, deadline=None, database=None)
@given(data=DATA, flow=st.booleans())
def test_random_documents_load_as_safe_load_does(data: Any, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    loaded, marks = yamlmarks.load_text(text, "f.yaml")
    assert loaded == yaml.safe_load(text)
    assert all(isinstance(line, int) and line >= 1 for line in marks.values())
