"""What the fuzz tests start from: real shapes from ../shared/testdata, and
hypothesis strategies that change them, field by field, into anything JSON
can say (wrong types, huge numbers, NaN, deep nesting, control characters)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
GERRIT = TESTDATA / "gerrit"

#: Values at the edges, drawn often: where parsers break.
edge_values = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        -0.0,
        0.5,
        2**63,
        -1,
        0,
        10**400,
        True,
        "",
        "0",
        "1.5",
        " 7 ",
        "²",
        "\n",
        "\x00",
        "../../etc",
        "NaN",
    ]
)

#: Any JSON value, small: what a hostile or broken peer could put in a field.
json_values: st.SearchStrategy[Any] = st.recursive(
    edge_values
    | st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

#: Text that is JSON only in part, or nested past any sane depth.
hostile_text = st.one_of(
    st.text(max_size=200),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: "1" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "null", "[]", '""', "{}"]),
)


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside the repository)")
    # Captured query files start with the command that printed them.
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside ``value`` (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((*prefix, index))
            out.extend(_paths(child, (*prefix, index)))
    return out


@st.composite
def mutated(draw: st.DrawFn, originals: list[dict[str, Any]]) -> dict[str, Any]:
    """One of ``originals`` with a few fields replaced by any JSON value or removed."""
    data = copy.deepcopy(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        try:
            for step in path[:-1]:
                parent = parent[step]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced it
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            parent.pop(path[-1], None)
        elif isinstance(parent, dict | list):
            try:
                parent[path[-1]] = draw(edge_values | json_values)
            except IndexError:
                continue
    return data


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is what ``hint`` promises, all the way down: what a
    parser gives must be safe to use as typed (no NaN where a time is due,
    no list where a name is)."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(conforms, value, args))
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()
        )
    if hint is float:
        if type(value) is int:
            return abs(value) < 2**63
        return type(value) is float and math.isfinite(value)
    if hint is int:
        return type(value) is int
    if hint in (str, bool, bytes):
        return type(value) is hint
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or hasattr(hint, "_fields")):
        if not isinstance(value, hint):
            return False
        hints = typing.get_type_hints(hint)
        return all(conforms(getattr(value, name), h) for name, h in hints.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise AssertionError(f"conforms() does not know {hint!r}")


def assert_conforms(value: Any, hint: Any) -> None:
    assert conforms(value, hint), f"{value!r} is not a {hint!r}"


def keyed_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON values whose objects use ``keys``: the names a parser looks up,
    so that every one of them meets every kind of value."""
    return st.recursive(
        edge_values | st.none() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(keys), children, max_size=6)
        ),
        max_leaves=16,
    )
