"""The live console of a running build, through the sandbox (the whole
daemon against the Gerrit simulator, a local node): the worker serves the
console on its own port and records the address on the build row; the web
relays it at /build/<uuid>/console as it is written, and the build page
appends it in Debian's headless Chromium without a reload.

The job waits on flag files between its lines, so the test decides when
each line is written, and it prints a line of HTML and script."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.tables import BuildRecord
from gatekeeper.errors import ConfigError
from gatekeeper.model.console import split_address
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.worker.console import ConsoleServer
from tests.fixtures.pipelines import GATE_PIPELINE
from tests.functional.test_gate import UNCONFINED  # jobs wait on a flag outside their node

pytestmark = pytest.mark.timeout(120)

HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>"

LAYOUT = (
    """
pipelines:
"""
    + GATE_PIPELINE
    + """jobs:
  - name: talking
    node: devstack-vm
    run: |
      echo first-line
      echo '{hostile}'
      seq -f 'filler-%g' 1 300
      while [ ! -e {flags}/step ]; do sleep 0.05; done
      echo second-line
      while [ ! -e {flags}/release ]; do sleep 0.05; done
      echo last-line
projects:
  - name: openstack/nova
    gate: [talking]
"""
)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    flags = tmp_path / "flags"
    flags.mkdir()
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT.replace("{flags}", str(flags)).replace("{hostile}", HOSTILE))
    sandbox = Sandbox(tmp_path / "sandbox", layout, extra_site={"providers": [UNCONFINED]})
    sandbox.start()
    try:
        yield sandbox
    finally:
        (flags / "step").touch()
        (flags / "release").touch()
        sandbox.stop()


def running_build(box: Sandbox) -> BuildRecord:
    """The change's build once a worker started it (its row has the address)."""
    assert box.app is not None
    number, patchset = box.push_change("openstack/nova", "Talk", {"x.txt": "x\n"})
    box.approve(number, patchset)
    store = BuildStore(box.app.db)

    def started() -> bool:
        return any(b.start_time is not None for b in store.for_change(number))

    box.wait_for(started, 60, "the build to start")
    [build] = store.for_change(number)
    return build


def messages(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) of each Server-Sent Event."""
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name or "message", line[len("data: ") :]
            name = ""


def until(events: Iterator[tuple[str, str]], data: str) -> list[tuple[str, str]]:
    seen = []
    for kind, text in events:
        seen.append((kind, text))
        if kind == "message" and text == data:
            return seen
    raise AssertionError(f"the stream ended before {data!r}: {seen}")


def ask_worker(address: str, request: bytes) -> bytes:
    where = split_address(address)
    assert where is not None
    with socket.create_connection(where, timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(4096):
            answer += data
        return answer


def test_console_streams_as_written_then_from_the_archive(box: Sandbox, tmp_path: Path) -> None:
    assert box.app is not None
    build = running_build(box)
    assert build.result is None and build.console_address.startswith("127.0.0.1:")
    url = f"{box.app.web_url}build/{build.uuid}/console"
    flags = tmp_path / "flags"

    # (a) The first lines, then each line as the job writes it, then the end.
    with httpx2.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = messages(response.iter_lines())
        head = until(events, "first-line")
        assert head[0] == ("source", "live")
        # From the start of console.txt: the worker's header comes first.
        assert head[1] == ("message", f"gatekeeper build {build.uuid} job talking")
        assert ("message", "second-line") not in head
        assert until(events, HOSTILE)[-1] == ("message", HOSTILE)
        (flags / "step").touch()
        until(events, "second-line")
        (flags / "release").touch()
        rest = list(events)
    assert ("message", "last-line") in rest
    assert ("message", f"gatekeeper build {build.uuid} result SUCCESS") in rest
    assert rest[-1][0] == "end"

    box.wait_until_settled()
    [done] = BuildStore(box.app.db).for_change(build.change or 0)
    assert done.result == "SUCCESS"
    # (c) Once ended, the archived console.txt, whole, and the result.
    with httpx2.stream("GET", url, timeout=60) as response:
        archived = list(messages(response.iter_lines()))
    assert archived[0] == ("source", "archive")
    assert archived[-1] == ("end", "SUCCESS")
    lines = [text for kind, text in archived if kind == "message"]
    assert lines[0] == f"gatekeeper build {build.uuid} job talking"
    assert lines.index("first-line") < lines.index("second-line") < lines.index("last-line")
    assert HOSTILE in lines
    # No build, no stream; the uuid only ever selects a row.
    missing = httpx2.get(f"{box.app.web_url}build/{'0' * 32}/console", timeout=10)
    assert missing.status_code == 404


def test_the_workers_console_port_answers_only_its_builds(box: Sandbox) -> None:
    """(b) The worker's own endpoint, dialled directly as the web would."""
    build = running_build(box)
    address = build.console_address
    assert ask_worker(address, f"{build.uuid}\n".encode()).startswith(b"OK\ngatekeeper build ")
    refused = {
        "unknown": f"{'ab' * 16}\n",
        "path": "../../../etc/passwd\n",
        "uuid-then-path": f"{build.uuid}/../../console.txt\n",
        "absolute": f"/{build.uuid}\n",
        "no-newline": build.uuid,
    }
    answers = {name: ask_worker(address, request.encode()) for name, request in refused.items()}
    assert answers == {
        "unknown": b"ERROR no such build running here\n",
        "path": b"ERROR not a build uuid\n",
        "uuid-then-path": b"ERROR not a build uuid\n",
        "absolute": b"ERROR not a build uuid\n",
        "no-newline": b"ERROR not a build uuid\n",
    }


def test_a_reader_who_leaves_stops_the_relay(box: Sandbox) -> None:
    """The browser goes away while the build still runs: the web hangs up on
    the worker too, which stops sending (no reader left on its port)."""
    assert box.app is not None and box.app.worker is not None
    consoles = box.app.worker.consoles
    assert consoles is not None
    build = running_build(box)
    with httpx2.stream("GET", f"{box.app.web_url}build/{build.uuid}/console", timeout=60) as r:
        until(messages(r.iter_lines()), "first-line")
        assert consoles.readers == 1
    box.wait_for(lambda: consoles.readers == 0, 30, "the worker's reader to end")
    assert box.app.db is not None
    [still] = BuildStore(box.app.db).for_change(build.change or 0)
    assert still.result is None


def _wait(browser: Any, what: str, condition: Any, timeout: float = 60) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=what)


def test_build_page_appends_the_console_without_a_reload(
    box: Sandbox, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    """(d) In Chromium: lines appear as written; the hostile line is text."""
    assert box.app is not None
    build = running_build(box)
    browser.get(f"{box.app.web_url}build/{build.uuid}")
    browser.execute_script("window.__sameLoad = 'yes'")
    console = browser.find_element("id", "gk-live-console")
    _wait(browser, "the first lines", lambda b: "first-line" in console.text)
    assert "second-line" not in console.text
    assert browser.find_element("id", "gk-console-state").text == "live"
    assert HOSTILE in console.text.splitlines()
    assert console.find_elements("css selector", "*") == []
    assert browser.execute_script("return window.__pwned") is None
    _wait(browser, "the lines before the wait", lambda b: "filler-300" in console.text)
    # The box followed the newest line; a reader who scrolls up stays put.
    assert browser.execute_script(
        "var p = arguments[0]; return p.scrollHeight > p.clientHeight"
        " && p.scrollTop + p.clientHeight >= p.scrollHeight - 8",
        console,
    )
    browser.execute_script("document.getElementById('console').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "live-console.png"))
    browser.execute_script("arguments[0].scrollTop = 0", console)
    _wait(browser, "following to stop", lambda b: console.get_attribute("data-follow") == "no")
    (tmp_path / "flags" / "step").touch()
    _wait(browser, "a line written after the page loaded", lambda b: "second-line" in console.text)
    assert browser.execute_script("return arguments[0].scrollTop", console) == 0
    (tmp_path / "flags" / "release").touch()
    _wait(browser, "the end", lambda b: console.get_attribute("data-ended"))
    assert "last-line" in console.text
    assert browser.execute_script("return window.__sameLoad") == "yes"
    assert browser.execute_script("return window.__pwned") is None
    errors = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert errors == []
    browser.save_screenshot(str(artifacts / "live-console-ended.png"))


def test_a_console_port_in_use_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"worker.console-listen: 127.0.0.1:{port} is in use"
        ):
            ConsoleServer("127.0.0.1", port)
