"""What the gate's head check reads from Gerrit's submit records before a
submit (gatekeeper.scheduler.reporter.unmet_requirements)."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.scheduler.reporter import unmet_requirements


def row(*labels: tuple[str, str, str | None], status: str = "NOT_READY") -> dict[str, Any]:
    return {
        "submitRecords": [
            {
                "status": status,
                "labels": [
                    {"label": name, "status": state, **({"by": {"username": by}} if by else {})}
                    for name, state, by in labels
                ],
            }
        ]
    }


@pytest.mark.parametrize(
    ("record", "votes", "unmet"),
    [
        pytest.param(row(status="OK"), {}, [], id="ok"),
        pytest.param(row(status="CLOSED"), {}, [], id="closed"),
        pytest.param(row(("Verified", "NEED", None)), {"Verified": 2}, [], id="our-vote-gives-it"),
        pytest.param(
            row(("Code-Review", "NEED", None), ("Verified", "NEED", None)),
            {"Verified": 2},
            ["needs Code-Review"],
            id="needs-review",
        ),
        pytest.param(
            row(("Code-Review", "REJECT", "alice"), ("Verified", "NEED", None)),
            {"Verified": 2},
            ["blocked by Code-Review"],
            id="vetoed",
        ),
        pytest.param(
            row(("Verified", "REJECT", "gatekeeper")),
            {"Verified": 2},
            [],
            id="our-own-block-replaced",
        ),
        pytest.param(
            row(("Verified", "REJECT", "gatekeeper")), {}, ["blocked by Verified"], id="our-block"
        ),
        pytest.param({"submitRecords": "garbage"}, {}, [], id="not-a-list"),
        pytest.param(
            {"submitRecords": [{"status": "RULE_ERROR", "errorMessage": "boom\x1b[2J"}]},
            {},
            ["Gerrit's submit rule failed (boom\\x1b[2J)"],
            id="rule-error-shown",
        ),
    ],
)
def test_unmet_requirements(
    record: dict[str, Any], votes: dict[str, int], unmet: list[str]
) -> None:
    assert unmet_requirements(record, "gatekeeper", votes) == unmet
