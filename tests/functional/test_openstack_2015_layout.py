"""OpenStack's 2015 layout in the sandbox: its periodic, post, tag and
merge-check pipelines each run.

The layout is read from ``../shared`` (skipped when it is absent) and
given to the daemon with its pipelines, templates and jobs as written. Three
things are the sandbox's: its 800 projects are cut to the one the test
drives (``openstack/python-novaclient``: every pipeline above runs jobs for
it, and its check and gate are among the smallest); the ``periodic``
timer's cron line names a second a few seconds away instead of 06:00; and
``openstack_functions.py``, which the layout includes and which is not in
``../shared``, is a stand-in whose ``set_node_options`` sets nothing (every
job runs on the sandbox's one node label). The jobs have no ``run:`` (they
were Jenkins jobs): each succeeds once its workspace is made.

Its periodic-stable and periodic-qa pipelines mail failures: the site
gets an ``smtp`` section for a real SMTP server (tests/fixtures/smtp.py).
Its gate and merge-check require ``Verified`` from the account ``jenkins``,
OpenStack's CI; gatekeeper reports here as ``gatekeeper``, so the test
casts jenkins's vote itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox, make_key
from tests.fixtures.smtp import MailServer

pytestmark = pytest.mark.timeout(300)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
OPENSTACK = SHARED / "layouts" / "openstack-project-config-2015.yaml"
PROJECT = "openstack/python-novaclient"

FUNCTIONS = '''"""A stand-in for OpenStack's openstack_functions.py (not in ../shared)."""


def set_node_options(item, job, params):
    # OpenStack's chose a node label per job; the sandbox has one.
    return None
'''


def sandbox_layout(directory: Path, slot: datetime) -> Path:
    """The layout as the module doc says, written in ``directory``."""
    if not OPENSTACK.exists():
        pytest.skip(f"{OPENSTACK} is absent (../shared is not beside the repository)")
    data = yaml.safe_load(OPENSTACK.read_text())
    data["projects"] = [p for p in data["projects"] if p["name"] == PROJECT]
    [periodic] = [p for p in data["pipelines"] if p["name"] == "periodic"]
    assert periodic["trigger"]["timer"] == [{"time": "0 6 * * *"}]
    periodic["trigger"]["timer"] = [{"time": f"{slot.minute} {slot.hour} * * * {slot.second}"}]
    (directory / "openstack_functions.py").write_text(FUNCTIONS)
    path = directory / "layout.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def box(tmp_path: Path, mail_server: MailServer) -> Iterator[Sandbox]:
    slot = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    sandbox = Sandbox(
        tmp_path / "sandbox",
        sandbox_layout(tmp_path, slot),
        worker_count=4,
        extra_site={"smtp": mail_server.site()},
    )
    sandbox.start_gerrit()
    assert sandbox.sim is not None
    sandbox.sim.add_account(
        "jenkins",
        "OpenStack Jenkins",
        "jenkins@openstack.org",
        make_key(sandbox.keys / "jenkins"),
        groups={"Non-Interactive Users"},
    )
    try:
        sandbox.start_daemon()
        yield sandbox
    finally:
        sandbox.stop()


def results(box: Sandbox, pipeline: str) -> list[str]:
    assert box.app is not None
    with box.app.db.session() as session:
        rows = session.scalars(
            select(BuildRecord).where(
                BuildRecord.pipeline == pipeline, BuildRecord.project == PROJECT
            )
        )
        return [r.result or "" for r in rows]


def test_its_periodic_post_tag_and_merge_check_pipelines_run(box: Sandbox) -> None:
    assert box.sim is not None
    # A change that will merge, and one that stays open.
    merging, ps = box.push_change(PROJECT, "Fix the shell", {"novaclient/fix.py": "x = 1\n"})
    staying, ps2 = box.push_change(PROJECT, "Add a command", {"novaclient/cmd.py": "y = 2\n"})
    box.wait_until_settled()
    for number, patchset in ((merging, ps), (staying, ps2)):
        box.review("jenkins", number, patchset, "--label", "Verified=1")
    box.approve(merging, ps)
    box.wait_until_settled()
    assert box.sim.get_change(merging).status == "MERGED"
    box.sim.create_tag(PROJECT, "liberty-eol", "bob")
    box.wait_for(lambda: bool(results(box, "periodic")), 60, "the periodic slot")
    box.wait_until_settled()

    # The merge moved master (post); the tag ran the tag pipeline; the merge
    # re-tested the open change (merge-check, through project-change-merged);
    # the cron slot ran the periodic pipeline.
    for pipeline in ("post", "tag", "merge-check", "periodic"):
        ran = results(box, pipeline)
        assert ran and set(ran) == {"SUCCESS"}, (pipeline, ran)
