"""``gatekeeper sandbox``: watch one change go through the gate, step by step."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from gatekeeper.errors import GatekeeperError
from gatekeeper.sandbox.gerrit_sim.state import DEFAULT_VERSION
from gatekeeper.sandbox.harness import Sandbox, fresh_dir

COMPONENTS = {
    "listeners": "listener",
    "gatekeeper.scheduler": "scheduler",
    "gatekeeper.dispatch": "gearman",
    "gatekeeper.worker": "worker",
    "gatekeeper.pool": "pool",
}
COLOURS = {
    "listener": "cyan",
    "scheduler": "magenta",
    "gearman": "blue",
    "worker": "green",
    "pool": "yellow",
    "gerrit": "bright_white",
    "sandbox": "bold",
}


class StoryHandler(logging.Handler):
    """Prints gatekeeper's INFO log as the story of the change."""

    def __init__(self, out: Console) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        who = next(
            (short for prefix, short in COMPONENTS.items() if record.name.startswith(prefix)), None
        )
        if who is None or record.name == "gatekeeper.console":
            return
        style = "red" if record.levelno >= logging.WARNING else COLOURS[who]
        self.out.print(f"[{style}]{who:>9}[/] {escape(record.getMessage())}")


class Demo:
    """Runs the story in the main thread; callbacks print from other threads."""

    def __init__(
        self,
        root: Path,
        layout: Path,
        out: Console | None = None,
        web_port: int = 8080,
        gerrit_version: str = DEFAULT_VERSION,
    ) -> None:
        self.out = out or Console(highlight=False, soft_wrap=True)
        self.gerrit_version = gerrit_version
        self.root = root
        self.layout = layout
        self.web_port = web_port
        self._lock = threading.Lock()

    def say(self, who: str, text: str) -> None:
        with self._lock:
            self.out.print(f"[{COLOURS.get(who, 'bold')}]{who:>9}[/] {text}")

    def console_line(self, line: str) -> None:
        with self._lock:
            self.out.print(f"[dim]{'job':>9} │ {escape(line)}[/]")

    def gerrit_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        change = event.get("change", {})
        if kind == "comment-added" and event.get("author", {}).get("username") == "gatekeeper":
            votes = (
                " ".join(
                    f"{a['type']}{int(a['value']):+d}"
                    for a in event.get("approvals", [])
                    if "oldValue" in a
                )
                or "no vote change"
            )
            self.say(
                "gerrit",
                f"review received on change {change.get('number')} "
                f"from gatekeeper: [bold]{escape(votes)}[/]",
            )
            for line in event.get("comment", "").splitlines():
                self.say("gerrit", f"  [italic]{escape(line)}[/]")
        elif kind == "change-merged":
            self.say(
                "gerrit",
                f"[bold green]change {change.get('number')} MERGED[/] into "
                f"{change.get('branch')} at {event.get('newRev', '')[:12]}",
            )

    def run(self, serve: bool) -> int:
        handler = StoryHandler(self.out)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        web = {"web": {"listen": {"host": "127.0.0.1", "port": self.web_port}}}
        sandbox = Sandbox(
            fresh_dir(self.root),
            self.layout,
            console=self.console_line,
            extra_site=web,
            gerrit_version=self.gerrit_version,
        )
        # An example known failure: a change that breaks a unit test gets a
        # "Recognised:" line in its failure report.
        sandbox.failures_dir.mkdir(parents=True, exist_ok=True)
        (sandbox.failures_dir / "unit-test-failed.yaml").write_text(EXAMPLE_SIGNATURE)
        try:
            self.say("sandbox", "starting the Gerrit simulator and gatekeeper ...")
            sandbox.start()
            assert sandbox.sim is not None
            sandbox.sim.add_listener(self.gerrit_event)
            self.say(
                "sandbox",
                f"Gerrit simulator ({sandbox.sim.version}) on "
                f"ssh://127.0.0.1:{sandbox.sim.port} with "
                "the eight projects; gatekeeper is listening to stream-events",
            )
            status = self.story(sandbox)
            if serve:
                self.print_howto(sandbox)
                assert sandbox.app is not None
                # On lines of their own, for people and scripts alike.
                self.out.print(f"web: {sandbox.app.web_url}", markup=False, highlight=False)
                self.out.print(f"site: {self.write_site(sandbox)}", markup=False, highlight=False)
                stop = threading.Event()
                try:
                    while not stop.wait(3600):
                        pass
                except KeyboardInterrupt:
                    self.say("sandbox", "stopping")
            return status
        except GatekeeperError as exc:
            self.say("sandbox", f"[red]failed: {escape(str(exc))}[/]")
            return 1
        finally:
            sandbox.stop()
            logging.getLogger().removeHandler(handler)

    def story(self, sandbox: Sandbox) -> int:
        sim = sandbox.sim
        assert sim is not None
        self.say(
            "sandbox", "alice pushes a change to openstack/nova (git push HEAD:refs/for/master)"
        )
        number, patchset = sandbox.push_change(
            "openstack/nova",
            "Add the m1.xlarge flavor",
            {"nova/__init__.py": NOVA_XLARGE},
        )
        self.say("sandbox", f"bob approves change {number},{patchset}: Code-Review+2 Workflow+1")
        sandbox.approve(number, patchset)
        try:
            sandbox.wait_for(
                lambda: sim.get_change(number).status != "NEW",
                600,
                "the change to merge",
            )
            sandbox.wait_until_settled(120)
        except GatekeeperError as exc:
            self.say("sandbox", f"[red]{escape(str(exc))}[/]")
        change = sim.get_change(number)
        logs = self.archive_of(sandbox, number)
        if change.status == "MERGED":
            self.say(
                "sandbox",
                f"[bold green]change {number} merged[/]; "
                f"nova master is now {sim.branch_head('openstack/nova')[:12]}",
            )
            self.say("sandbox", f"log archive: {logs}")
            self.say_build_page(sandbox, number)
            return 0
        last = change.messages[-1].text if change.messages else "no review"
        self.say(
            "sandbox",
            f"[red]change {number} is {change.status}, not merged[/]: "
            f"{escape(last.splitlines()[0] if last else '')}",
        )
        self.say("sandbox", f"log archive: {logs}")
        self.say_build_page(sandbox, number)
        return 1

    def say_build_page(self, sandbox: Sandbox, number: int) -> None:
        """The web page of the change's last build (the gate's, when it ran)."""
        assert sandbox.app is not None and sandbox.app.scheduler is not None
        records = sandbox.app.scheduler.context.builds.for_change(number)
        if records:
            last = max(records, key=lambda r: (r.pipeline == "gate", r.end_time or 0))
            self.say("sandbox", f"build page: {sandbox.app.web_url}build/{last.uuid}")

    def write_site(self, sandbox: Sandbox) -> Path:
        """A site file for the running sandbox (its Gearman, database, state
        and web), so ``gatekeeper status -c FILE`` and the rest reach it."""
        app = sandbox.app
        assert app is not None and app.gearman is not None
        site = sandbox.site
        path = site.state_dir / "site.yaml"
        web_port = app.web.port if app.web is not None else 0
        return sandbox.site_file(
            path,
            f"database: {site.database}\n"
            f"gearman:\n  listen: {{host: {app.gearman.host}, port: {app.gearman.port}}}\n"
            f"web:\n  listen: {{host: {site.web.listen.host}, port: {web_port}}}\n"
            f"  url: {app.web_url}\n"
            f"failures-dir: {site.failures_dir}\n",
        )

    def archive_of(self, sandbox: Sandbox, number: int) -> Path:
        """Where the change's last build is archived (the log root if none ran)."""
        root = sandbox.site.log_root
        assert root is not None and sandbox.app is not None and sandbox.app.scheduler
        records = sandbox.app.scheduler.context.builds.for_change(number)
        finished = [r for r in records if r.log_url.startswith(sandbox.site.log_url)]
        if not finished:
            return root
        # The gate build is the one that let the change merge: show that one.
        last = max(finished, key=lambda r: (r.pipeline == "gate", r.end_time or 0))
        return root / last.log_url[len(sandbox.site.log_url) :]

    def print_howto(self, sandbox: Sandbox) -> None:
        assert sandbox.sim is not None
        port, keys, kh = sandbox.sim.port, sandbox.keys, sandbox.known_hosts
        ssh = f"ssh -i {keys}/alice -o UserKnownHostsFile={kh} -o IdentitiesOnly=yes"
        self.out.print(f"""
[bold]The sandbox keeps running (Ctrl-C stops it).[/] Push and approve by hand:

  export GIT_SSH_COMMAND="{ssh}"
  git clone ssh://alice@127.0.0.1:{port}/openstack/glance && cd glance
  echo change >> README.rst
  git commit -am "My change" -m "Change-Id: I$(head -c20 /dev/urandom | sha1sum | cut -c1-40)"
  git push origin HEAD:refs/for/master

  ssh -p {port} -i {keys}/bob -o UserKnownHostsFile={kh} bob@127.0.0.1 \\
      gerrit review --code-review 2 --label Workflow=1 CHANGE,PATCHSET
  ssh -p {port} -i {keys}/alice -o UserKnownHostsFile={kh} alice@127.0.0.1 \\
      gerrit review --message recheck CHANGE,PATCHSET
  ssh -p {port} -i {keys}/alice -o UserKnownHostsFile={kh} alice@127.0.0.1 \\
      gerrit query --format JSON --current-patch-set status:open

Logs are archived under {sandbox.site.log_root}.
""")


EXAMPLE_SIGNATURE = """\
id: unit-test-failed
description: a project's unit test failed (the sandbox's example signature)
files: [logs/screen-*.txt*]
patterns: ['^FAIL: test_']
"""

NOVA_XLARGE = '''"""Nova (sandbox): the arithmetic of flavors."""


def vcpus_for(flavor: str) -> int:
    sizes = {"m1.tiny": 1, "m1.small": 1, "m1.medium": 2, "m1.large": 4, "m1.xlarge": 8}
    return sizes[flavor]
'''
