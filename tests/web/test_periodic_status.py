"""A timer's item on the status outputs: a ref (the branch's), not a change.

Its job waits on a flag file outside its node (so it runs unconfined, as
in tests/functional/test_gate.py) while the status is read: in the
scheduler's own status, in ``/status.json`` (Zuul v2.5 gave a periodic
item no id) and on the page in Debian's headless Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from gatekeeper.sandbox.harness import Sandbox
from tests.functional.test_gate import UNCONFINED

pytestmark = pytest.mark.timeout(120)

LAYOUT = """
pipelines:
  - name: periodic
    manager: independent
    trigger:
      timer:
        - time: '{cron}'
jobs:
  - name: nightly
    node: devstack-vm
    run: "while [ ! -e {flag} ]; do sleep 0.05; done"
projects:
  - name: openstack/nova
    periodic: [nightly]
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    slot = datetime.now(UTC) + timedelta(seconds=5)
    layout = tmp_path / "layout.yaml"
    cron = f"{slot.minute} {slot.hour} * * * {slot.second}"
    layout.write_text(LAYOUT.format(cron=cron, flag=tmp_path / "release"))
    sandbox = Sandbox(tmp_path / "sandbox", layout, extra_site={"providers": [UNCONFINED]})
    sandbox.start()
    try:
        yield sandbox
    finally:
        (tmp_path / "release").touch()
        sandbox.stop()


def periodic_items(status: dict[str, Any]) -> list[dict[str, Any]]:
    [periodic] = [p for p in status["pipelines"] if p["name"] == "periodic"]
    return [item for queue in periodic["queues"] for item in queue["items"]]


def test_a_periodic_item_shows_as_its_branchs_ref(
    box: Sandbox, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    assert box.app is not None
    app = box.app
    box.wait_for(lambda: bool(periodic_items(app.live_status())), 60, "the periodic item")

    [item] = periodic_items(app.live_status())
    # What `gatekeeper status` prints from: no change, the ref.
    assert (item["project"], item["change"], item["ref"]) == (
        "openstack/nova",
        None,
        "refs/heads/master",
    )
    [zuul] = [
        i
        for p in httpx2.get(app.web_url + "status.json", timeout=10).json()["pipelines"]
        if p["name"] == "periodic"
        for q in p["change_queues"]
        for head in q["heads"]
        for i in head
    ]
    assert (zuul["id"], zuul["project"], zuul["ref"]) == (
        None,
        "openstack/nova",
        "refs/heads/master",
    )

    browser.get(app.web_url)
    [shown] = WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda b: b.find_elements("css selector", ".gk-item"), message="the periodic item"
    )
    assert shown.find_element("css selector", ".gk-project").text == "openstack/nova"
    assert shown.find_element("css selector", ".gk-change").text == "refs/heads/master"
    assert shown.find_element("css selector", ".gk-branch").text == "master"
    browser.save_screenshot(str(artifacts / "periodic.png"))

    (tmp_path / "release").touch()
    box.wait_until_settled()
