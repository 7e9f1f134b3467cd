"""Failures that cluster on one provider, found through the real daemon.

Two local providers, ``east`` and ``west``, build their own daily image of
the label. West's image carries a stand-in fault: its setup script leaves a
``broken-disk`` marker in the image, and every job checks for that marker
on its node and fails where it finds it (a fake fault, since nothing real
breaks a local directory node; everything else is real: the simulator, the
scheduler, Gearman over TLS, the workers, the pool, the database and the
web). After two changes' checks, every build knows where it ran (provider,
image and its age, worker), and west is flagged on the page, by the CLI,
in the metrics and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gatekeeper.cli import main
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import BuildRecord
from gatekeeper.model.node import ImageState, NodeState
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(240)

LABEL = "devstack-vm"
JOBS = [f"tempest-{n}" for n in range(6)]
#: Small enough for a dozen builds; the statistics tests cover realistic counts.
MIN_RUNS = 4


def layout() -> str:
    jobs = "".join(
        f"""  - name: {job}
    node: {LABEL}
    run: |
      if [ -e ../broken-disk ]; then echo "I/O error on /dev/vda"; exit 1; fi
      echo "tests passed"
"""
        for job in JOBS
    )
    return f"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
jobs:
{jobs}projects:
  - name: openstack/nova
    check: [{", ".join(JOBS)}]
"""


def provider(tmp_path: Path, name: str, setup: str) -> dict[str, object]:
    root = tmp_path / name
    (root / "images" / LABEL).mkdir(parents=True)
    script = tmp_path / f"{name}-setup.sh"
    script.write_text(setup)
    return {
        "name": name,
        "driver": "local",
        "root": str(root / "nodes"),
        "max-servers": 3,
        "images": [{"label": LABEL, "setup": [str(script)]}],
    }


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(layout())
    sandbox = Sandbox(
        tmp_path / "sandbox",
        path,
        worker_count=6,
        extra_site={
            "providers": [
                provider(tmp_path, "east", "echo ok > provisioned\n"),
                provider(tmp_path, "west", "echo ok > provisioned\ntouch broken-disk\n"),
            ],
            # No held nodes: every failure would otherwise keep one.
            "labels": [{"name": LABEL, "min-ready": 0, "hold-max": 0}],
            "insights": {"providers": {"min-runs": MIN_RUNS, "refresh": 0.5}},
        },
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def builds(box: Sandbox) -> list[BuildRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        return list(session.scalars(select(BuildRecord).order_by(BuildRecord.dispatched_at)))


def test_failures_on_one_providers_image_flag_that_provider(
    box: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert box.app is not None
    images = ImageStore(box.app.db)
    # Both daily images first, so every build's node is booted from one.
    box.wait_for(
        lambda: len(images.list(label=LABEL, state=ImageState.READY)) == 2, 60, "both images"
    )
    with caplog.at_level(logging.WARNING, logger="gatekeeper.insights.providers"):
        for n in range(2):
            box.push_change("openstack/nova", f"Change {n}", {f"nova/c{n}.txt": "x\n"})
        box.wait_until_settled()
        box.wait_for(
            lambda: len(builds(box)) == 12 and all(b.result for b in builds(box)),
            60,
            "every build to be recorded",
        )
        records = builds(box)

        # Every build knows where it ran: its node's provider, the image that
        # node was booted from and when that image was built, the worker.
        by_provider: dict[str, list[BuildRecord]] = {}
        for record in records:
            by_provider.setdefault(record.provider, []).append(record)
            assert record.image.startswith(f"{LABEL}-{record.provider}-")
            assert record.image_built_at is not None and record.start_time is not None
            assert record.image_built_at <= record.start_time
            assert record.worker == "sandbox-worker" and record.node
            # The stand-in fault: west's image fails the job, east's passes it.
            expected = "FAILURE" if record.provider == "west" else "SUCCESS"
            assert record.result == expected, record.provider
        assert sorted(by_provider) == ["east", "west"]
        # Both providers served enough builds to be compared (the pool splits
        # a round's demand across them by free capacity).
        assert min(len(v) for v in by_provider.values()) >= MIN_RUNS, by_provider.keys()

        # The pool's watch saw west turn worse and said so once.
        box.wait_for(
            lambda: box.app is not None and box.app.provider_watch.flagged_providers() == {"west"},
            30,
            "the pool to flag west",
        )
    warnings = [r.getMessage() for r in caplog.records if "all jobs" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("provider west is significantly worse")

    # The web page.
    page = httpx.get(f"{box.app.web_url}insights/providers", timeout=30)
    assert '<tr data-provider="west" class="gk-flagged">' in page.text
    assert '<tr data-provider="east">' in page.text

    # The CLI, on the same database through the site file.
    site = box.site_file(
        tmp_path / "gatekeeper.yaml",
        f"insights:\n  providers:\n    min-runs: {MIN_RUNS}\n",
    )
    result = CliRunner().invoke(main, ["insights", "providers", "-c", str(site)])
    assert result.exit_code == 0, result.output
    all_jobs = result.output.split("all jobs", 1)[1].split("tempest-0", 1)[0]
    west = next(line for line in all_jobs.splitlines() if line.strip().startswith("west"))
    east = next(line for line in all_jobs.splitlines() if line.strip().startswith("east"))
    assert "FLAGGED" in west and "100.0%" in west
    assert "FLAGGED" not in east and "0.0%" in east

    # The metrics.
    text = httpx.get(f"{box.app.web_url}metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    flags = {
        s.labels["provider"]: s.value
        for s in families["gatekeeper_provider_flagged"].samples
        if s.labels["job"] == ""
    }
    assert flags == {"west": 1.0, "east": 0.0}

    # With deprioritize-failing on for the label (the site file is read at
    # start, so the test sets it on the running pool's label), the next
    # change's builds all run on east.
    assert box.app.pool is not None
    [label] = [lb for lb in box.app.pool.labels if lb.name == LABEL]
    label.deprioritize_failing = True
    # West's nodes left READY from the last round are taken out too.
    nodes = NodeStore(box.app.db)
    box.wait_for(
        lambda: not nodes.list(LABEL, "west", NodeState.READY), 30, "west's ready nodes to go"
    )
    with caplog.at_level(logging.INFO, logger="gatekeeper.pool.pool"):
        number, _ = box.push_change("openstack/nova", "Change 2", {"nova/c2.txt": "x\n"})
        box.wait_until_settled()
    third = [b for b in builds(box) if b.change == number]
    assert len(third) == len(JOBS)
    assert {(b.provider, b.result) for b in third} == {("east", "SUCCESS")}
    assert any("label devstack-vm: not launching on west" in r.getMessage() for r in caplog.records)

    # And the build page says where one ran.
    west_build = by_provider["west"][0]
    page = httpx.get(f"{box.app.web_url}build/{west_build.uuid}", timeout=30)
    assert west_build.image in page.text and "old at the start" in page.text
