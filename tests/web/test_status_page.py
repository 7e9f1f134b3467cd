"""The status page in Debian's headless Chromium against a running sandbox:
a change in the gate with its job running, then its job's SUCCESS and the
change leaving, drawn in place without a reload; a commit subject full of
markup and script shown as text and never run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from gatekeeper.sandbox.harness import Sandbox
from tests.web.held_gate import held_gate_box  # noqa: F401 - the box fixture

pytestmark = pytest.mark.timeout(120)

HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>"


def _wait(browser: Any, what: str, condition: Any, timeout: float = 60) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=what)


def test_gate_change_runs_then_merges_without_a_reload(
    box: Sandbox, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    assert box.app is not None and box.sim is not None
    number, patchset = box.push_change("openstack/nova", HOSTILE, {"x.txt": "x\n"})
    box.approve(number, patchset)
    browser.get(box.app.web_url)
    # Marks this page load: a reload would lose it.
    browser.execute_script("window.__sameLoad = 'yes'")
    key = f"{number},{patchset}"
    item = _wait(
        browser,
        "the change in the gate",
        lambda b: b.find_elements("css selector", f".gk-item[data-change='{key}']"),
    )[0]
    job = item.find_element("css selector", ".gk-job[data-key='held']")
    state = job.find_element("css selector", ".gk-job-state")
    _wait(browser, "the job running", lambda b: state.text == "running")
    # The commit subject is text on the page, not markup that ran.
    assert item.find_element("css selector", ".gk-subject").text == HOSTILE
    assert browser.execute_script("return window.__pwned") is None
    assert item.find_elements("css selector", "img, script") == []
    link = job.find_element("css selector", "a.gk-job-name")
    assert "/build/" in link.get_attribute("href")
    browser.save_screenshot(str(artifacts / "running.png"))

    (tmp_path / "release").touch()
    # The node drawn for the item leaves the page once the change merged (its
    # job's SUCCESS may show in between, for less than a poll: not waited on).
    _wait(browser, "the merged change to leave", staleness_of(item))
    assert not browser.find_elements("css selector", f".gk-item[data-change='{key}']")
    assert box.sim.get_change(number).status == "MERGED"
    assert browser.execute_script("return window.__sameLoad") == "yes"
    assert browser.execute_script("return window.__pwned") is None
    browser.save_screenshot(str(artifacts / "merged.png"))
    errors = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert errors == []


def test_filter_is_kept_in_the_url_and_one_change_has_its_page(
    box: Sandbox, browser: Any, artifacts: Path
) -> None:
    assert box.app is not None
    first = box.push_change("openstack/nova", "First", {"a.txt": "a\n"})
    second = box.push_change("openstack/nova", "Second", {"b.txt": "b\n"})
    box.approve(*first)
    box.approve(*second)
    keys = [f"{n},{p}" for n, p in (first, second)]

    def shown(b: Any) -> list[str]:
        return [e.get_attribute("data-change") for e in b.find_elements("css selector", ".gk-item")]

    browser.get(box.app.web_url)
    _wait(browser, "both changes", lambda b: shown(b) == keys)
    # The second is drawn on top of the first: the chain names it.
    chain = browser.find_element("css selector", f".gk-item[data-change='{keys[1]}'] .gk-chain")
    assert chain.text == f"on top of: {keys[0]} → {keys[1]}"
    box_input = browser.find_element("css selector", "#gk-filter input[name=change]")
    box_input.send_keys(keys[1])
    _wait(browser, "only the second", lambda b: shown(b) == [keys[1]])
    assert f"change={keys[1].replace(',', '%2C')}" in browser.current_url
    browser.save_screenshot(str(artifacts / "filtered.png"))
    # The URL alone gives the same view.
    browser.get(box.app.web_url + f"?project=nova&change={keys[0]}")
    _wait(browser, "only the first", lambda b: shown(b) == [keys[0]])
    browser.get(box.app.web_url + "?pipeline=check")
    _wait(
        browser,
        "nothing in check",
        lambda b: "0 items shown" in b.find_element("id", "gk-summary").text,
    )
    # One change's page: that change in every pipeline it is in.
    browser.get(box.app.web_url + f"change/{keys[1]}")
    _wait(browser, "the change's own page", lambda b: shown(b) == [keys[1]])
    assert "gk-folded" not in browser.find_element(
        "css selector", ".gk-pipeline[data-key=gate]"
    ).get_attribute("class")
    browser.save_screenshot(str(artifacts / "change.png"))
