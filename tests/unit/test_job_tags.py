"""Job ``tags``: informational in Zuul v2.5, where a layout's parameter
function read them off the job; here they reach it the same way, and the
status shows them with the job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config.layout import load_layout
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.scheduler.params import build_params, call_parameter_function

pytestmark = pytest.mark.timeout(30)

LAYOUT = """
pipelines:
  - name: check
    manager: independent
jobs:
  - name: ^.*-dsvm-.*$
    tags: [devstack, slow]
  - name: gate-tempest-dsvm-full
    tags: smoke
projects:
  - name: openstack/nova
    check: [gate-tempest-dsvm-full, gate-nova-pep8]
"""


def use_big_nodes(item: Any, job: Any, params: dict[str, Any]) -> None:
    """What OpenStack-style parameter functions did with tags: choose by them."""
    if "devstack" in job.tags:
        params["ZUUL_NODE"] = "devstack-8g"
    params["JOB_TAGS"] = ",".join(job.tags)


def test_a_parameter_function_reads_the_tags_every_matching_entry_gave(tmp_path: Path) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text(LAYOUT)
    layout = load_layout(path)
    change = Change("openstack/nova", "master", 1, 1, ref="refs/changes/01/1/1")
    item = QueueItem(change=change, pipeline="check")
    out = {}
    for name in ("gate-tempest-dsvm-full", "gate-nova-pep8"):
        params = build_params(change, [], "check", name, "a" * 32, "")
        call_parameter_function(use_big_nodes, item, layout.job(name), params)
        out[name] = (params.get("ZUUL_NODE"), params["JOB_TAGS"])
    assert out == {
        "gate-tempest-dsvm-full": ("devstack-8g", "devstack,slow,smoke"),
        "gate-nova-pep8": (None, ""),
    }
