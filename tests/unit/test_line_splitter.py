"""Cutting the stream-events byte stream into lines, whatever the chunks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.gerrit.stream_lines import HEAD_BYTES, LineSplitter, OverlongLine

pytestmark = pytest.mark.timeout(60)


def split(chunks: list[bytes], max_line: int) -> list[bytes | OverlongLine]:
    splitter = LineSplitter(max_line)
    return [line for chunk in chunks for line in splitter.feed(chunk)]


def expected(stream: bytes, max_line: int) -> list[bytes | OverlongLine]:
    """What the splitter must give for a whole stream, written the plain way."""
    out: list[bytes | OverlongLine] = []
    *lines, _partial = stream.split(b"\n")
    for line in lines:
        if len(line) > max_line:
            out.append(OverlongLine(line[:HEAD_BYTES], len(line)))
        elif line.strip():
            out.append(line)
    return out


def test_an_over_long_line_is_reported_once_and_the_next_line_is_read() -> None:
    # The long line comes in many chunks, its end in the same chunk as the next line.
    long_line = b'{"type": "patchset-created", "x": "' + b"y" * 10_000 + b'"}'
    chunks = [long_line[i : i + 999] for i in range(0, len(long_line), 999)]
    chunks[-1] += b'\n{"type": "next"}\n'
    assert split(chunks, 4096) == [
        OverlongLine(long_line[:HEAD_BYTES], len(long_line)),
        b'{"type": "next"}',
    ]


def test_a_line_of_exactly_the_limit_is_read() -> None:
    assert split([b"a" * 100, b"\n"], 100) == [b"a" * 100]
    assert split([b"a" * 101 + b"\n"], 100) == [OverlongLine(b"a" * 101, 101)]


def test_memory_stays_bounded_on_a_line_without_end() -> None:
    splitter = LineSplitter(1000)
    for _ in range(1000):
        assert list(splitter.feed(b"z" * 65536)) == []
    # Nothing past the head is kept of a line that never ends.
    assert len(splitter._buf) == 0


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    max_line=st.integers(min_value=1, max_value=256),
    tail=st.binary(max_size=50),
)
def test_any_chunking_gives_the_lines_of_the_whole_stream(
    lines: list[bytes], cuts: list[int], max_line: int, tail: bytes
) -> None:
    stream = b"".join(line + b"\n" for line in lines) + tail.replace(b"\n", b"")
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert split(chunks, max_line) == expected(stream, max_line)
