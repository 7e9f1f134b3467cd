"""Outside text in a log line stays on its line and within its length."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.model.outside import shown


def test_a_newline_cannot_forge_a_log_line() -> None:
    forged = "ok\n2026-12-06 12:00:00 INFO gatekeeper: change merged"
    assert shown(forged) == "ok\\n2026-12-06 12:00:00 INFO gatekeeper: change merged"


def test_terminal_escapes_and_separators_are_written_out() -> None:
    assert shown("\x1b[2Jred\u2028x\x00") == "\\x1b[2Jred\\u2028x\\x00"


def test_a_lone_surrogate_is_written_out() -> None:
    """JSON's "\\ud800" decodes to one; a UTF-8 log stream cannot write it."""
    assert shown("a\ud800b") == "a\\ud800b"
    shown("\udfff" * 3).encode("utf-8")


def test_a_long_text_is_cut_and_counted() -> None:
    assert shown("a" * 3_000_000, limit=10) == "aaaaaaaaaa...(+2999990 chars)"


def test_bytes_are_decoded_and_bad_bytes_replaced() -> None:
    assert shown(b"caf\xc3\xa9 \xff") == "café \ufffd"


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_shown_is_one_printable_line_of_bounded_length(text: str, limit: int) -> None:
    out = shown(text, limit)
    assert "\n" not in out and "\r" not in out
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) < 0xA0 for c in out)
    # Each kept character becomes at most six (\u2028), plus the count.
    assert len(out) <= 6 * limit + len(f"...(+{len(text)} chars)")
