"""A sandbox whose gate job waits on a flag file: changes stay in the gate
until the test (or the fixture's end) releases them.

Tests take it as the ``box`` fixture by importing ``held_gate_box``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.pipelines import GATE_PIPELINE
from tests.functional.test_gate import UNCONFINED  # jobs wait on a flag outside their node

LAYOUT = (
    """
pipelines:
"""
    + GATE_PIPELINE
    + """jobs:
  - name: held
    node: devstack-vm
    run: "while [ ! -e {flag} ]; do sleep 0.05; done"
projects:
  - name: openstack/nova
    gate: [held]
"""
)


@pytest.fixture(name="box")
def held_gate_box(tmp_path: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT.replace("{flag}", str(tmp_path / "release")))
    sandbox = Sandbox(tmp_path / "sandbox", layout, extra_site={"providers": [UNCONFINED]})
    sandbox.start()
    try:
        yield sandbox
    finally:
        (tmp_path / "release").touch()
        sandbox.stop()
