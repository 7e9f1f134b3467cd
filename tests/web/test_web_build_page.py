"""The build page of a real build: a change run through the sandbox (the
whole daemon against the Gerrit simulator, a local node, bubblewrap), its
page and logs read over HTTP and in Debian's headless Chromium.

The change's subject is HTML with a script; the worker writes every
project's subject into the console, so the page renders outside text the
way a hostile commit would bring it."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
SUBJECT = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'
JOB_LINE = re.compile(r"^- gate-devstack-vm (\S+) : (SUCCESS|FAILURE) in \S+", re.M)


@dataclass
class Built:
    sandbox: Sandbox
    build: BuildRecord
    url: str  # the log URL in the Gerrit comment


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    box = Sandbox(tmp_path_factory.mktemp("web") / "sandbox", REPO / "layout.yaml")
    try:
        box.start()
        assert box.sim is not None and box.app is not None
        number, _ = box.push_change("openstack/nova", SUBJECT, {"nova/extra.txt": "x\n"})
        box.wait_until_settled()
        [build] = BuildStore(box.app.db).for_change(number)
        change = box.sim.get_change(number)
        [message] = [m.text for m in change.messages if m.author == "gatekeeper"]
        match = JOB_LINE.search(message)
        assert match is not None
        yield Built(box, build, match.group(1))
    finally:
        box.stop()


def web_for(sandbox: Sandbox) -> TestClient:
    assert sandbox.app is not None
    ctx = WebContext(site=sandbox.site, db=sandbox.app.db, live=lambda: {})
    return TestClient(make_app(ctx))


def test_the_gerrit_comment_links_to_the_web(built: Built) -> None:
    """The comment's link is the web's /logs/ page of the build, and it opens."""
    site = built.sandbox.site
    assert built.url.startswith(site.web.url + "logs/")
    with web_for(built.sandbox) as web:
        index = web.get(built.url[len(site.web.url) - 1 :])
        assert index.status_code == 200
        assert f"gate-devstack-vm {built.build.change},{built.build.patchset}" in index.text
        assert "console.txt" in index.text


def test_build_page_of_a_real_build(built: Built) -> None:
    build = built.build
    assert build.label == "devstack-vm" and build.branch == "master"
    with web_for(built.sandbox) as web:
        page = web.get(f"/build/{build.uuid}")
        assert page.status_code == 200
        text = page.text
        assert "NODE_PROVIDER=local" in text  # the console
        assert '<a class="gk-lno" href="#L1">1</a>' in text
        assert "console.txt?view=html" in text  # the log tree
        assert f"<th>ZUUL_CHANGE</th><td>{build.change}</td>" in text
        assert "<th>LOG_PATH</th>" in text
        assert "<script>document" not in text and "&lt;script&gt;document" in text
        assert "<img src=x" not in text
        listed = web.get("/api/builds", params={"change": build.change}).json()
        assert [b["uuid"] for b in listed] == [build.uuid]
        assert listed[0]["label"] == "devstack-vm" and listed[0]["provider"] == "local"
        assert web.get(f"/buildset/{build.item_uuid}").status_code == 200


@pytest.fixture
def served(built: Built) -> Iterator[str]:
    assert built.sandbox.app is not None
    ctx = WebContext(site=built.sandbox.site, db=built.sandbox.app.db, live=lambda: {})
    server = uvicorn.Server(
        uvicorn.Config(make_app(ctx), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_build_page_in_a_browser(built: Built, served: str, browser: Any, artifacts: Path) -> None:
    """Console visible, a line range highlighted from the URL, the log tree
    listed, and the hostile subject inert: shown as text, never run."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served}/build/{built.build.uuid}#L2-L4")
    console = browser.find_element(By.ID, "gk-console")
    assert console.is_displayed() and "NODE_PROVIDER=local" in console.text
    marked = browser.find_elements(By.CSS_SELECTOR, ".gk-line.gk-hl")
    assert [m.get_attribute("id") for m in marked] == ["L2", "L3", "L4"]
    assert marked[0].value_of_css_property("background-color") == "rgba(255, 245, 157, 1)"
    tree = browser.find_element(By.CSS_SELECTOR, ".gk-tree").text
    assert "console.txt" in tree

    # The subject is in the console as text; nothing of it became an element.
    assert SUBJECT in console.text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert "pwned" not in browser.title and browser.title != "1"

    def marked_ids() -> list[str]:
        return [m.get_attribute("id") for m in browser.find_elements(By.CSS_SELECTOR, ".gk-hl")]

    # A click on a line number marks that line; a shift-click the range to it.
    # (hashchange is dispatched after the click returns: wait for the marks)
    browser.find_element(By.CSS_SELECTOR, "#L1 a.gk-lno").click()
    WebDriverWait(browser, 10).until(lambda _: marked_ids() == ["L1"])
    third = browser.find_element(By.CSS_SELECTOR, "#L3 a.gk-lno")
    ActionChains(browser).key_down(Keys.SHIFT).click(third).key_up(Keys.SHIFT).perform()
    WebDriverWait(browser, 10).until(lambda _: marked_ids() == ["L1", "L2", "L3"])
    assert browser.current_url.endswith("#L1-L3")
    browser.save_screenshot(str(artifacts / "build-page.png"))

    # The full console in the log view: the same anchors, from its own URL.
    log_dir = built.url[len(built.sandbox.site.web.url) - 1 :]
    browser.get(f"{served}{log_dir}console.txt?view=html#L5-L6")
    assert marked_ids() == ["L5", "L6"]
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    browser.save_screenshot(str(artifacts / "console-view.png"))
    errors = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert errors == []
