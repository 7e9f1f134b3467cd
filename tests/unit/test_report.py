"""What gatekeeper writes to Gerrit, and how the command line carries it."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.gerrit import cmdline
from gatekeeper.gerrit.connection import parse_version, review_argv
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.scheduler.reports import compose_message, format_duration, gerrit_label, job_line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (12.4, "12s"), (242, "4m 02s"), (3790, "1h 03m 10s")],
    ids=["zero", "seconds", "minutes", "hours"],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_job_lines_are_what_ci_result_plugins_parse() -> None:
    build = Build(
        job="gate-devstack-vm",
        item_uuid="x",
        result=BuildResult.FAILURE,
        url="https://logs.example.org/56/123456/1/gate/gate-devstack-vm/5f1e2d3/",
        started_at=100.0,
        ended_at=342.0,
    )
    assert job_line(build) == (
        "- gate-devstack-vm https://logs.example.org/56/123456/1/gate/gate-devstack-vm/5f1e2d3/"
        " : FAILURE in 4m 02s"
    )
    build.voting = False
    assert job_line(build).endswith(" (non-voting)")


def test_message_lists_jobs_in_order() -> None:
    item = QueueItem(change=Change("openstack/nova", "master", 1, 1), pipeline="check")
    for name in ("b-job", "a-job"):
        item.builds[name] = Build(
            job=name,
            item_uuid=item.uuid,
            result=BuildResult.SUCCESS,
            url=f"file:///logs/{name}/",
            started_at=0.0,
            ended_at=5.0,
        )
    text = compose_message("Build succeeded.", "check", item, ["b-job", "a-job"])
    assert text.splitlines()[0] == "Build succeeded (check pipeline)."
    assert [line.split()[1] for line in text.splitlines()[2:]] == ["b-job", "a-job"]


@pytest.mark.parametrize(
    ("layout_name", "gerrit_name"),
    [("verified", "Verified"), ("code-review", "Code-Review"), ("workflow", "Workflow")],
)
def test_labels_are_sent_as_gerrit_spells_them(layout_name: str, gerrit_name: str) -> None:
    assert gerrit_label(Change("p", "master", 1, 1), layout_name) == gerrit_name


def test_label_spelling_follows_the_change() -> None:
    change = Change("p", "master", 1, 1, approvals={"My-CI-Label": {"ci": 1}})
    assert gerrit_label(change, "my-ci-label") == "My-CI-Label"


def test_review_argv() -> None:
    argv = review_argv("openstack/nova", 12, 3, "Build failed.", {"Verified": -2}, True)
    assert argv == [
        "gerrit",
        "review",
        "--project",
        "openstack/nova",
        "--message",
        "Build failed.",
        "--label",
        "Verified=-2",
        "--submit",
        "12,3",
    ]
    assert "Verified=0" in review_argv("p", 1, 1, "", {"Verified": 0}, False)


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_any_message_survives_gerrits_parser_and_a_shell(message: str) -> None:
    argv = review_argv("openstack/nova", 1, 1, message, {"Verified": 1}, False)
    line = cmdline.join(argv)
    assert cmdline.split(line) == argv
    assert shlex.split(line) == argv


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("gerrit version 2.13.9", (2, 13, 9)),
        ("gerrit version 3.10.3-sim\n", (3, 10, 3)),
        ("gerrit version 2.8", (2, 8)),
        ("gerrit version (dev)", ()),
    ],
    ids=["2.13", "3.10", "short", "unknown"],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version
