"""The log scanner: which known failures a build's logs show, and where.

A build's logs can be hundreds of megabytes, so a file is never read whole:
it is streamed in blocks (gzip-compressed files too, told by their magic
bytes, not their name) cut at line ends, and memory stays at a block plus
one line, whatever the file's size.

Speed comes from not looking at lines one by one in Python. For each file,
the patterns of every signature that looks at it are joined into one RE2
expression, searched over a whole block at once (RE2's DFA, in C); a line is
only taken apart where that search stops. There every signature's own
patterns are tried on that one line, so a pattern always means what it says
on a line by itself (a ``\\s`` in a pattern cannot reach into the next line).

Bounds: a line longer than :data:`MAX_LINE` is searched in pieces of that
size; a signature's matches stop counting after :data:`MAX_MATCHES` per
build; the line kept is cut to :data:`LINE_KEPT` characters; and a scan stops
at its deadline (what it found by then is kept and the result says it is
incomplete).
"""

from __future__ import annotations

import gzip
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import re2

from gatekeeper.insights.signatures import Signature, compile_re2, re2_options

log = logging.getLogger(__name__)

__all__ = ["BLOCK", "LINE_KEPT", "MAX_LINE", "MAX_MATCHES", "Match", "ScanResult", "Scanner"]

#: Bytes read (after decompression) per search.
BLOCK = 1 << 20
#: The longest line searched as one; longer ones are searched in pieces.
MAX_LINE = 64 << 10
#: Matches kept per signature per build: enough to show it, not to flood a table.
MAX_MATCHES = 5
#: Characters of a matching line kept.
LINE_KEPT = 500

_GZIP_MAGIC = b"\x1f\x8b"
#: File names whose signatures are remembered (a bound for odd log trees).
_NAMES_KEPT = 4096


@dataclass(frozen=True)
class Match:
    """A signature found on one line of one file."""

    signature: str
    #: The file's path under the build's log directory (``logs/screen-n-cpu.txt.gz``).
    file: str
    #: 1-based.
    line_number: int
    #: The line (from the build: escape it before showing), cut to LINE_KEPT.
    line: str


@dataclass
class ScanResult:
    matches: list[Match] = field(default_factory=list)
    files: int = 0
    #: Bytes searched (decompressed).
    bytes: int = 0
    #: False when the deadline stopped the scan before every file was read.
    complete: bool = True
    #: Files that could not be read (a broken gzip stream, say), one line each.
    problems: list[str] = field(default_factory=list)

    @property
    def signatures(self) -> list[str]:
        """The ids of the signatures found, in order of first match."""
        return list(dict.fromkeys(m.signature for m in self.matches))


class _OutOfTimeError(Exception):
    pass


class _FileMatcher:
    """The signatures that look at one kind of file, ready to search blocks.

    ``combined`` is every pattern of every signature not yet at its match
    limit, joined; it finds candidate lines. ``checks`` are each signature's
    own patterns, tried on a candidate line alone.
    """

    def __init__(self, signatures: Sequence[Signature]) -> None:
        self.checks = [(s.id, [_line_regex(p) for p in s.patterns]) for s in signatures]
        self.combined = _combined(signatures)


def _line_regex(pattern: str) -> re2._Regexp:
    return compile_re2(pattern)


def _combined(signatures: Sequence[Signature]) -> re2._Regexp | None:
    """One RE2 for every pattern, searched over blocks of many lines:
    multi-line mode so ``^`` and ``$`` still mean a line's ends."""
    patterns = [p for s in signatures for p in s.patterns]
    if not patterns:
        return None
    options = re2_options()
    # Only where a match starts is read: RE2 need not track any group.
    options.never_capture = True
    # Room for 200 signatures' DFA states; RE2 falls back to its NFA (slower,
    # still linear, still correct) if even that is not enough.
    options.max_mem = 64 << 20
    text = "(?m)" + "|".join(f"(?:{p})" for p in patterns)
    try:
        return re2.compile(text.encode("utf-8"), options=options)
    except re2.error:
        # Each pattern compiled alone at load; only their sum can be refused
        # (too large): then every line is a candidate, which is slow but right.
        log.warning("the %d patterns are too large for one expression", len(patterns))
        return None


class Scanner:
    """Searches log directories for the given signatures. Immutable after
    construction: any number of threads may scan with one."""

    def __init__(
        self,
        signatures: Sequence[Signature],
        block: int = BLOCK,
        max_line: int = MAX_LINE,
        max_matches: int = MAX_MATCHES,
    ) -> None:
        self.signatures = list(signatures)
        self.block = block
        self.max_line = max_line
        self.max_matches = max_matches
        self._matchers: dict[tuple[str, ...], _FileMatcher] = {}
        self._looking: dict[str, tuple[str, ...]] = {}

    def _matcher(self, path: str, done: set[str] | None = None) -> _FileMatcher | None:
        """The matcher of the signatures that look at ``path``, less those ``done``."""
        looking = self._looking.get(path)
        if looking is None:
            # Builds name their files alike (console.txt, logs/screen-n-cpu.txt):
            # the globs are tried once per name, not once per file.
            looking = tuple(s.id for s in self.signatures if s.looks_at(path))
            if len(self._looking) < _NAMES_KEPT:
                self._looking[path] = looking
        wanted = tuple(sid for sid in looking if sid not in done) if done else looking
        if not wanted:
            return None
        matcher = self._matchers.get(wanted)
        if matcher is None:
            # A race between two threads builds it twice; both are equal.
            matcher = _FileMatcher([s for s in self.signatures if s.id in wanted])
            if len(self._matchers) >= _NAMES_KEPT:
                self._matchers.clear()  # sets of signatures at their limit vary
            self._matchers[wanted] = matcher
        return matcher

    def scan(self, log_dir: Path, deadline: float | None = None) -> ScanResult:
        """Every file under ``log_dir`` that a signature looks at, searched.

        ``deadline`` is a ``time.monotonic()`` value; the scan stops there.
        """
        result = ScanResult()
        counts: dict[str, int] = {}
        try:
            for path, rel in _files(log_dir):
                done = {sig for sig, n in counts.items() if n >= self.max_matches}
                matcher = self._matcher(rel, done)
                if matcher is None:
                    continue
                result.files += 1
                self._scan_file(path, rel, matcher, result, counts, deadline)
        except _OutOfTimeError:
            result.complete = False
        return result

    def _scan_file(
        self,
        path: Path,
        rel: str,
        matcher: _FileMatcher,
        result: ScanResult,
        counts: dict[str, int],
        deadline: float | None,
    ) -> None:
        line_number = 1  # of the first line of the next piece
        try:
            with _open(path) as stream:
                for piece in _pieces(stream, self.block, self.max_line):
                    if deadline is not None and time.monotonic() > deadline:
                        raise _OutOfTimeError
                    result.bytes += len(piece)
                    found = self._search(piece, line_number, rel, matcher, counts)
                    result.matches.extend(found)
                    if any(counts.get(m.signature, 0) >= self.max_matches for m in found):
                        # A signature at its limit leaves the search: a log
                        # full of one error is not searched line by line.
                        done = {sig for sig, n in counts.items() if n >= self.max_matches}
                        narrower = self._matcher(rel, done)
                        if narrower is None:
                            return
                        matcher = narrower
                    line_number += piece.count(b"\n")
        except (OSError, EOFError, zlib.error) as exc:
            # A broken gzip stream or a file gone: what was found stays found.
            result.problems.append(f"{rel}: {exc}")

    def _search(
        self,
        piece: bytes,
        first_line: int,
        rel: str,
        matcher: _FileMatcher,
        counts: dict[str, int],
    ) -> list[Match]:
        """The matches in ``piece``, whose first line is ``first_line``."""
        found: list[Match] = []
        pos = 0  # always the start of a line
        line_number = first_line
        counted_to = 0
        end = len(piece)
        while pos < end:
            at = pos
            if matcher.combined is not None:
                hit = matcher.combined.search(piece, pos)
                if hit is None:
                    break
                at = hit.start()
            start = piece.rfind(b"\n", 0, at) + 1
            stop = piece.find(b"\n", at)
            stop = end if stop == -1 else stop
            line = piece[start:stop]
            line_number += piece.count(b"\n", counted_to, start)
            counted_to = start
            for signature, regexes in matcher.checks:
                if counts.get(signature, 0) >= self.max_matches:
                    continue
                if any(regex.search(line) is not None for regex in regexes):
                    counts[signature] = counts.get(signature, 0) + 1
                    found.append(Match(signature, rel, line_number, _kept(line)))
            pos = stop + 1
        return found


def _kept(line: bytes) -> str:
    text = line[: LINE_KEPT * 4].decode("utf-8", "replace").rstrip("\r")
    return text[:LINE_KEPT]


def _files(log_dir: Path) -> Iterator[tuple[Path, str]]:
    """Regular files under ``log_dir`` (links are not followed), in name order."""
    for root, dirs, names in os.walk(log_dir, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.relative_to(log_dir).as_posix()


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it starts as gzip does (a
    ``.txt`` may be compressed, a ``.gz`` may not)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]  # a GzipFile reads as IO[bytes] does
        else:
            yield raw


def _pieces(stream: IO[bytes], block: int, max_line: int) -> Iterator[bytes]:
    """The stream in pieces that end at a line end (the last one may not),
    each at most ``block + max_line`` bytes; a line longer than ``max_line``
    is cut into pieces of its own."""
    carry = b""
    while True:
        data = stream.read(block)
        if not data:
            if carry:
                yield carry
            return
        data = carry + data if carry else data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
        while len(carry) > max_line:
            yield carry[:max_line]
            carry = carry[max_line:]
