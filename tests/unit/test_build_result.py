"""How the scheduler reads a build's result, from a worker or from the database."""

from __future__ import annotations

import pytest

from gatekeeper.model.build import BuildResult


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SUCCESS", BuildResult.SUCCESS),
        ("MERGER_FAILURE", BuildResult.MERGER_FAILURE),
        ("SOMETHING_NEWER", BuildResult.ERROR),
        ("", BuildResult.ERROR),
    ],
    ids=["known", "known-rare", "unknown-is-error", "empty-is-error"],
)
def test_a_result_is_read_and_an_unknown_one_is_an_error(value: str, expected: BuildResult) -> None:
    assert BuildResult.read(value) is expected
