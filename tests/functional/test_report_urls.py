"""A job's success-pattern and failure-pattern through the daemon: the URL its
line of the Gerrit report links to, read back from the Gerrit simulator.

On SQLite and PostgreSQL: ``{build.number}`` and ``{build.parameters[...]}``
are read from the builds table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.db import postgres_server_url, scratch_postgres_database

pytestmark = pytest.mark.timeout(120)

PROJECT = "openstack/nova"

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit: {verified: 1}
    failure:
      gerrit: {verified: -1}
jobs:
  # OpenStack's docs-draft pattern, with every other placeholder Zuul v2 filled.
  - name: docs
    node: devstack-vm
    run: "true"
    success-pattern: "http://docs-draft.example.org/{build.parameters[LOG_PATH]}/html/\\
      ?c={change.number}&ps={change.patchset}&p={pipeline.name}&j={job.name}\\
      &u={build.uuid}&n={build.number}&proj={change.project}&b={change.branch}"
    failure-pattern: "http://never.example.org/{job.name}"
  - name: lint
    node: devstack-vm
    run: "exit 1"
    voting: false
    failure-pattern: "http://lint.example.org/{change.number}/{build.result}"
    failure-message: "lint found problems"
    success-pattern: "http://never.example.org/{job.name}"
  - name: unit
    node: devstack-vm
    run: "true"
projects:
  - name: openstack/nova
    check: [docs, lint, unit]
"""


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]
)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "postgresql":
        with scratch_postgres_database(postgres_server_url()) as url:
            yield url
    else:
        yield ""  # the sandbox's own SQLite file


@pytest.fixture
def box(tmp_path: Path, database_url: str) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", path, worker_count=3, database=database_url)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def report(box: Sandbox, number: int) -> str:
    assert box.sim is not None
    [text] = [
        m.text
        for m in box.sim.get_change(number).messages
        if m.author == "gatekeeper" and "(check pipeline)" in m.text
    ]
    return text


def record(box: Sandbox, number: int, job: str) -> BuildRecord:
    assert box.app is not None
    with box.app.db.session() as session:
        query = select(BuildRecord).where(BuildRecord.change == number, BuildRecord.job == job)
        [found] = session.scalars(query)
        return found


def line_of(text: str, job: str) -> str:
    [line] = [x for x in text.splitlines() if x.startswith(f"- {job} ")]
    return line


def test_the_report_links_each_job_where_its_pattern_says(box: Sandbox) -> None:
    first, _ = box.push_change(PROJECT, "First", {"a.txt": "a\n"})
    box.wait_until_settled()
    second, _ = box.push_change(PROJECT, "Second", {"b.txt": "b\n"})
    box.wait_until_settled()

    for number, nth in ((first, 1), (second, 2)):
        text = report(box, number)
        docs = record(box, number, "docs")
        log_path = json.loads(docs.parameters)["LOG_PATH"]
        assert line_of(text, "docs").startswith(
            f"- docs http://docs-draft.example.org/{log_path}/html/"
            f"?c={number}&ps=1&p=check&j=docs&u={docs.uuid}&n={nth}"
            f"&proj={PROJECT}&b=master : SUCCESS in "
        )
        # A failure takes the failure pattern and the job's failure message.
        assert line_of(text, "lint").startswith(
            f"- lint http://lint.example.org/{number}/FAILURE : lint found problems in "
        )
        assert line_of(text, "lint").endswith("(non-voting)")
        # No pattern: the build's own log URL, as before.
        unit = record(box, number, "unit")
        assert unit.log_url and line_of(text, "unit").startswith(
            f"- unit {unit.log_url} : SUCCESS in "
        )
        assert "never.example.org" not in text
