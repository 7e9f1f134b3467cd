"""Every layout under tests/fixtures/layouts/bad is rejected at its line, in words of its own.

Each fixture starts with ``# expect: <line> <substring>``: the one error it
must produce is placed on that line (the line of the offending key, item or
value) and contains that substring.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from gatekeeper.config.layout import load_layout
from gatekeeper.errors import ConfigError

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "layouts" / "bad"
FILES = sorted(BAD.glob("*.yaml"))
EXPECT = re.compile(r"# expect: (\d+) (.+)")
# A key path such as ``pipelines[0].trigger.gerrit[1].approval`` and its colon.
KEY_PATH = re.compile(r"[^\s:\[\].]+(?:\[\d+\]|\.[^\s:\[\].]+)*: ")
# Problems of the whole file, which no key path can name.
WHOLE_FILE = ("YAML syntax error: ", "a layout must be a mapping")


def expectation(path: Path) -> tuple[int, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = EXPECT.fullmatch(first)
    assert match, f"{path.name}: the first line must be '# expect: <line> <substring>'"
    return int(match.group(1)), match.group(2)


def rejection(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_layout(path)
    return info.value


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # 2012 spellings log warnings; they are not what these tests look at.
    caplog.set_level(logging.ERROR, logger="gatekeeper.config.layout")


@pytest.mark.timeout(10)
def test_there_are_at_least_forty() -> None:
    assert len(FILES) >= 40


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_bad_layout_is_rejected_at_its_line(path: Path) -> None:
    line, substring = expectation(path)
    errors = rejection(path).errors
    assert len(errors) == 1, errors
    (message,) = errors
    prefix = f"{path}:{line}: "
    assert message.startswith(prefix), message
    assert substring in message
    rest = message.removeprefix(prefix)
    assert rest.startswith(WHOLE_FILE) or KEY_PATH.match(rest), f"no key path: {message}"


@pytest.mark.timeout(30)
def test_messages_are_pairwise_distinct() -> None:
    seen: dict[str, str] = {}
    for path in FILES:
        # Without the file name, which alone would tell any two apart.
        message = str(rejection(path)).removeprefix(f"{path}:")
        assert message not in seen, f"{path.name} and {seen[message]} both say {message!r}"
        seen[message] = path.name
