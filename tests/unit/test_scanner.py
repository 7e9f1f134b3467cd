"""The log scanner on real files: plain and gzip (told by magic bytes),
lines across block boundaries, long lines, and patterns that would hang a
backtracking engine."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from gatekeeper.insights.scanner import LINE_KEPT, Match, Scanner
from gatekeeper.insights.signatures import Signature

pytestmark = pytest.mark.timeout(20)


def sig(id: str, *patterns: str, files: tuple[str, ...] = ("**",)) -> Signature:
    return Signature(
        id=id, description=f"{id} happened", patterns=list(patterns), files=list(files)
    )


def write(path: Path, text: str, zipped: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def test_plain_and_gzipped_files_told_by_their_bytes_not_their_names(tmp_path: Path) -> None:
    # devstack-gate gzips logs but keeps .txt names for browsers; a .gz may be plain.
    write(tmp_path / "logs/screen-n-cpu.txt", "ok\nlibvirtError: End of file\n", zipped=True)
    write(tmp_path / "logs/screen-n-api.txt.gz", "ok\nok\nRPC timeout waiting\n")
    write(tmp_path / "console.txt", "nothing to see\n")
    scanner = Scanner([sig("eof", "libvirtError: End of file"), sig("rpc", "RPC timeout")])
    result = scanner.scan(tmp_path)
    assert result.complete and not result.problems
    assert result.matches == [
        Match("rpc", "logs/screen-n-api.txt.gz", 3, "RPC timeout waiting"),
        Match("eof", "logs/screen-n-cpu.txt", 2, "libvirtError: End of file"),
    ]
    assert result.files == 3


def test_only_the_files_a_signature_names_are_searched(tmp_path: Path) -> None:
    write(tmp_path / "console.txt", "Killed\n")
    write(tmp_path / "logs/syslog.txt", "Killed\n")
    result = Scanner([sig("oom", "^Killed$", files=("logs/syslog.txt*",))]).scan(tmp_path)
    assert [(m.signature, m.file) for m in result.matches] == [("oom", "logs/syslog.txt")]
    assert result.files == 1


def test_line_numbers_hold_across_block_boundaries(tmp_path: Path) -> None:
    lines = [f"{i:04d} routine line of a devstack log" for i in range(1, 400)]
    lines[122] = "0123 ERROR nova.compute Instance failed to spawn"
    lines[377] = "0378 ERROR nova.compute Instance failed to spawn"
    write(tmp_path / "console.txt", "\n".join(lines) + "\n", zipped=True)
    # Tiny blocks: matches fall near and across the edges of many reads.
    scanner = Scanner([sig("spawn", "failed to spawn")], block=97, max_line=200)
    found = scanner.scan(tmp_path).matches
    assert [m.line_number for m in found] == [123, 378]
    assert found[0].line == lines[122]


def test_a_pattern_matches_one_line_only(tmp_path: Path) -> None:
    write(tmp_path / "console.txt", "connect\nrefused\nconnect   refused\n")
    # \s and [^x] can match a newline in RE2; a signature still means one line.
    scanner = Scanner([sig("refused", r"^connect\s+refused$"), sig("neg", r"connect[^x]refused")])
    found = scanner.scan(tmp_path).matches
    assert [(m.signature, m.line_number) for m in found] == [("refused", 3)]


def test_long_lines_are_bounded(tmp_path: Path) -> None:
    huge = "x" * 300_000 + " MARKER " + "y" * 300_000
    write(tmp_path / "console.txt", f"first\n{huge}\nMARKER after\n")
    scanner = Scanner([sig("marker", "MARKER")], block=4096, max_line=65536)
    found = scanner.scan(tmp_path).matches
    # Found inside the long line (searched in pieces) and on the next line.
    assert [m.line_number for m in found] == [2, 3]
    assert len(found[0].line) == LINE_KEPT


def test_a_pattern_that_hangs_a_backtracking_engine_does_not_hang_re2(tmp_path: Path) -> None:
    """Python's re takes time exponential in the run of a's to fail
    ``^(a+)+$`` on this line (40 a's: days); RE2 is linear by construction,
    so the scan ends, and the test's timeout would fail it if it did not."""
    write(tmp_path / "console.txt", ("a" * 40 + "!\n") * 1000 + "aaaa\n")
    result = Scanner([sig("evil", "^(a+)+$"), sig("evil2", "^(a|aa)*$")]).scan(tmp_path)
    assert result.complete
    assert [(m.signature, m.line_number) for m in result.matches] == [
        ("evil", 1001),
        ("evil2", 1001),
    ]


def test_matches_per_signature_are_capped(tmp_path: Path) -> None:
    write(tmp_path / "console.txt", "ERROR x\n" * 1000)
    write(tmp_path / "logs/other.txt", "ERROR y\nTimeout\n")
    scanner = Scanner([sig("error", "ERROR"), sig("timeout", "Timeout")], max_matches=3)
    found = scanner.scan(tmp_path).matches
    assert [(m.signature, m.file, m.line_number) for m in found] == [
        ("error", "console.txt", 1),
        ("error", "console.txt", 2),
        ("error", "console.txt", 3),
        # Once at its cap a signature is no longer searched for, others still are.
        ("timeout", "logs/other.txt", 2),
    ]


def test_a_deadline_stops_the_scan_and_says_so(tmp_path: Path) -> None:
    write(tmp_path / "console.txt", "ERROR\n")
    result = Scanner([sig("error", "ERROR")]).scan(tmp_path, deadline=time.monotonic() - 1)
    assert not result.complete and result.matches == []


def test_a_broken_gzip_keeps_what_was_found_before_the_break(tmp_path: Path) -> None:
    data = gzip.compress(b"ERROR early\n" + b"filler line\n" * 50_000)
    (tmp_path / "console.txt").write_bytes(data[: len(data) // 2])
    scanner = Scanner([sig("error", "ERROR early")], block=4096)
    result = scanner.scan(tmp_path)
    assert [m.line_number for m in result.matches] == [1]
    assert len(result.problems) == 1 and result.problems[0].startswith("console.txt: ")


def test_links_are_not_followed(tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere" / "secret.txt", "ERROR secret\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "console.txt").symlink_to(secret)
    assert Scanner([sig("error", "ERROR")]).scan(logs).matches == []


def test_one_patterns_flags_stay_in_that_pattern(tmp_path: Path) -> None:
    # All patterns are searched as one expression; (?i) must not leak to the next.
    write(tmp_path / "console.txt", "FOO x\nbar\nBar\n")
    found = Scanner([sig("a", "(?i)foo"), sig("b", "Bar")]).scan(tmp_path).matches
    assert [(m.signature, m.line_number) for m in found] == [("a", 1), ("b", 3)]
