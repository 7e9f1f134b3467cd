"""Gerrit's SSH command-line splitter and the quoting that survives it and a shell."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.gerrit import cmdline


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("gerrit review 1,2", ["gerrit", "review", "1,2"]),
        ("a \t b", ["a", "b"]),
        ("  lead  trail  ", ["lead", "trail"]),
        ("'a b' \"c d\"", ["a b", "c d"]),
        ("'say \"hi\"'", ['say "hi"']),
        ('"it\'s"', ["it's"]),
        ("a''b", ["ab"]),
        ("'' x \"\"", ["x"]),
        ("a\\ b", ["a b"]),
        ('"a\\"b"', ['a"b']),
        ("'a\\b'", ["a\\b"]),
        ("trailing\\", ["trailing\\"]),
        ("line1\nline2", ["line1\nline2"]),
        ("$(rm -rf /);`x`", ["$(rm", "-rf", "/);`x`"]),
    ],
    ids=[
        "plain",
        "tab",
        "outer-space",
        "both-quotes",
        "double-inside-single",
        "single-inside-double",
        "adjacent-empty",
        "empty-dropped",
        "backslash-space",
        "backslash-in-double",
        "backslash-literal-in-single",
        "trailing-backslash",
        "newline-ordinary",
        "shell-chars-ordinary",
    ],
)
def test_split(line: str, expected: list[str]) -> None:
    assert cmdline.split(line) == expected


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("master", "master"),
        ("1,2", "1,2"),
        ("Code-Review=+2", "Code-Review=+2"),
        ("a b", "'a b'"),
        ("it's", "'it'\"'\"'s'"),
        ("", "''"),
    ],
    ids=["word", "change", "label", "space", "single-quote", "empty"],
)
def test_quote(arg: str, quoted: str) -> None:
    assert cmdline.quote(arg) == quoted


def test_empty_argument_is_dropped_by_gerrit_but_kept_by_shell() -> None:
    line = cmdline.join(["a", "", "b"])
    assert cmdline.split(line) == ["a", "b"]
    assert shlex.split(line) == ["a", "", "b"]


HOSTILE = "'\"$(rm -rf /) `id`;\n\\ \t|&<>*?~#!{}[]\x7f é 中 \U0001f600\r"

args = st.lists(
    st.text(alphabet=st.one_of(st.sampled_from(HOSTILE), st.characters()), min_size=1)
    # NUL cannot travel in an SSH exec string or through shlex.
    .filter(lambda s: "\x00" not in s),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(args)
def test_join_round_trips_through_gerrit_splitter(argv: list[str]) -> None:
    assert cmdline.split(cmdline.join(argv)) == argv


@settings(max_examples=300, deadline=None)
@given(args)
def test_join_round_trips_through_posix_shell(argv: list[str]) -> None:
    assert shlex.split(cmdline.join(argv)) == argv
