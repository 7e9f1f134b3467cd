"""A whole gatekeeper against the Gerrit simulator, in one process.

Used by ``gatekeeper sandbox`` (the demo), by the functional tests and by
the end-to-end benchmark: it starts the simulator with the eight projects,
accounts with their own SSH keys (gatekeeper, alice the developer, bob the
core reviewer), and the real daemon configured to talk to it; then it acts
as a person would, with ``git push`` and ``gerrit review`` over SSH.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko

from gatekeeper.app import ALL, Gatekeeper
from gatekeeper.config.site import (
    GearmanConfig,
    GearmanServer,
    GerritConfig,
    GerritHttpConfig,
    SiteConfig,
)
from gatekeeper.dispatch.certs import Role, TlsFiles
from gatekeeper.dispatch.tokens import mint, read_secret
from gatekeeper.errors import GatekeeperError
from gatekeeper.gerrit import cmdline
from gatekeeper.gerrit.connection import GerritConnection, ssh_client
from gatekeeper.model.events import TriggerEvent
from gatekeeper.node.confine import Jail
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from gatekeeper.sandbox.gerrit_sim.state import DEFAULT_VERSION
from gatekeeper.sandbox.seed import PROJECTS, seed_files
from listeners.gerrit import GerritListener

log = logging.getLogger(__name__)

#: The HTTP password of the daemon's Gerrit account (a sandbox with ``rest``).
REST_PASSWORD = "sandbox-http-password"

USERS = {
    "gatekeeper": ("Gatekeeper CI", "gatekeeper@example.org", {"Non-Interactive Users"}),
    "alice": ("Alice Developer", "alice@example.org", set()),
    "bob": ("Bob Core", "bob@example.org", {"Administrators"}),
}


class SandboxError(GatekeeperError):
    """The sandbox could not do what a person asked of it."""


def make_key(path: Path) -> str:
    """An ed25519 key pair at ``path``; returns the public key line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return path.with_suffix(".pub").read_text().strip()


def needs_unconfined(bwrap: str) -> bool:
    """Whether the sandbox's local provider must run jobs unconfined: only
    where bubblewrap cannot run. The sandbox's Gerrit is the simulator and
    its changes are the demo's own, so it runs them anyway, and says so.
    """
    problem = Jail(bwrap).problem()
    if problem:
        log.warning("sandbox: jobs run UNCONFINED, as this user: %s", problem)
    return bool(problem)


def change_id_for(text: str) -> str:
    return "I" + hashlib.sha1(f"{text}{time.time_ns()}".encode()).hexdigest()


class _CountingListener:
    """The sandbox's listener as the daemon sees it: the real GerritListener,
    with each event passed to the sandbox's hooks and counted (in the
    listener's thread)."""

    def __init__(self, sandbox: Sandbox, listener: GerritListener) -> None:
        self.sandbox = sandbox
        self.listener = listener

    def run(self, sink: Callable[[TriggerEvent], None]) -> None:
        sandbox = self.sandbox

        def counted(event: TriggerEvent) -> None:
            for hook in sandbox.event_hooks:
                hook(event)
            sink(event)
            with sandbox._delivered_lock:
                sandbox.events_delivered += 1

        self.listener.run(counted)

    def stop(self) -> None:
        self.listener.stop()


class Sandbox:
    """Simulator + daemon + the people who use them. Driven from one thread."""

    def __init__(
        self,
        root: Path,
        layout: Path,
        console: Callable[[str], None] | None = None,
        gearman_servers: list[tuple[str, int]] | None = None,
        database: str = "",
        worker_count: int = 2,
        extra_site: dict[str, Any] | None = None,
        components: frozenset[str] = ALL,
        gerrit_version: str = DEFAULT_VERSION,
        rest: bool = False,
        gearman_tls_dir: Path | None = None,
        gearman_insecure: bool = False,
    ) -> None:
        self.root = root.resolve()
        #: The Gerrit version (and so the dialect) the simulator speaks.
        self.gerrit_version = gerrit_version
        #: Reviews and submits over the simulator's REST API (gerrit.http).
        self.rest = rest
        self.layout = layout.resolve()
        self.console = console
        self.gearman_servers = gearman_servers or []
        # External servers: the directory of certificates they trust (default
        # <state>/tls, made at first start), or plain TCP (Debian's gearmand).
        self.gearman_tls_dir = gearman_tls_dir
        self.gearman_insecure = gearman_insecure
        self.database = database
        self.worker_count = worker_count
        self.extra_site = extra_site or {}
        #: What the daemon runs (a test starts the worker later with
        #: ``app.start_worker()`` to decide who takes the first build).
        self.components = components
        self.keys = self.root / "keys"
        #: The site's known-failure signatures (``failures-dir``), in its state.
        self.failures_dir = self.root / "state" / "failures"
        self.known_hosts = self.root / "known_hosts"
        self.sim: GerritSimulator | None = None
        self.app: Gatekeeper | None = None
        self.listener: GerritListener | None = None
        self.events_delivered = 0
        self._delivered_lock = threading.Lock()
        #: Called (in the listener thread) with each event as it reaches the scheduler.
        self.event_hooks: list[Callable[[TriggerEvent], None]] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self, port: int = 0) -> None:
        self.start_gerrit(port)
        self.start_daemon()

    def start_daemon(self) -> None:
        """gatekeeper itself, in this process, against the running simulator."""
        self.site = self._site_config()
        assert self.site.gerrit is not None  # _site_config points it at the simulator
        assert self.site.failures_dir is not None
        self.site.failures_dir.mkdir(parents=True, exist_ok=True)
        connection = GerritConnection(self.site.gerrit)
        self.listener = GerritListener(connection, backoff_start=0.2, backoff_max=2.0)
        self.app = Gatekeeper(
            self.site,
            listener=_CountingListener(self, self.listener),
            console=self.console,
            worker_name="sandbox-worker",
            components=self.components,
        )
        self.app.start()
        if not self.listener.connected.wait(30):
            raise SandboxError("the listener did not connect to the Gerrit simulator")

    def start_gerrit(self, port: int = 0) -> None:
        """Only the simulator, its projects and its people: for a daemon run
        as its own process (see :meth:`site_file`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        sim = GerritSimulator(self.root / "gerrit", port=port, version=self.gerrit_version)
        self.sim = sim
        for user, (name, email, groups) in USERS.items():
            sim.add_account(user, name, email, make_key(self.keys / user), groups=set(groups))
        for project in PROJECTS:
            sim.create_project(project, seed_files(project))
        sim.start()
        if self.rest:
            sim.start_http()
            sim.set_http_password("gatekeeper", REST_PASSWORD)
        self.known_hosts.write_text(sim.known_hosts_line() + "\n")

    def site_file(self, path: Path, extra: str = "") -> Path:
        """A ``gatekeeper.yaml`` for ``gatekeeper run`` against the simulator
        (state in ``<root>/state``); ``extra`` is appended as YAML."""
        assert self.sim is not None
        if "providers:" not in extra and needs_unconfined("bwrap"):
            extra += "providers:\n  - name: local\n    unconfined: true\n"
        path.write_text(
            f"gerrit:\n  host: {self.sim.host}\n  port: {self.sim.port}\n  user: gatekeeper\n"
            f"  key: {self.keys / 'gatekeeper'}\n  known_hosts: {self.known_hosts}\n"
            f"layout: {self.layout}\nstate-dir: {self.root / 'state'}\n"
            + ("" if "web:" in extra else "web:\n  listen: {host: 127.0.0.1, port: 0}\n")
            + extra
        )
        return path

    def _site_config(self) -> SiteConfig:
        assert self.sim is not None
        gearman = GearmanConfig(listen=GearmanServer(host="127.0.0.1", port=0))
        if self.gearman_servers:
            gearman = GearmanConfig(
                embedded=False,
                servers=[GearmanServer(host=h, port=p) for h, p in self.gearman_servers],
                insecure=self.gearman_insecure,
                tls_dir=self.gearman_tls_dir,
            )
        data: dict[str, Any] = {
            "layout": self.layout,
            "state-dir": self.root / "state",
            "gearman": gearman,
            "worker": {"count": self.worker_count, "node-wait": 120},
            "pool": {"interval": 0.5},
            # Any free port: tests run side by side (the demo asks for 8080).
            "web": {"listen": {"host": "127.0.0.1", "port": 0}},
            # Known-failure signatures (*.yaml), read when the worker starts.
            "failures-dir": self.failures_dir,
        }
        if self.database:
            data["database"] = self.database
        data.update(self.extra_site)
        site = SiteConfig.model_validate(data)
        site.gerrit = GerritConfig(
            host=self.sim.host,
            port=self.sim.port,
            user="gatekeeper",
            key=self.keys / "gatekeeper",
            known_hosts=self.known_hosts,
        )
        if self.rest:
            site.gerrit.http = GerritHttpConfig(
                url=self.sim.http_url, user="gatekeeper", password=REST_PASSWORD
            )
        for provider in site.providers:
            if provider.driver == "local" and not provider.unconfined:
                provider.unconfined = needs_unconfined(provider.bwrap)
        return site.resolve(self.root)

    def operator_token(self, user: str = "bob", role: str = "admin", lifetime: float = 600) -> str:
        """A token for operator requests, signed with the running site's secret
        (as ``gatekeeper admin token`` makes one)."""
        assert self.site.admin.secret_file is not None
        return mint(read_secret(self.site.admin.secret_file), user, role, lifetime)

    def operator_tls(self) -> TlsFiles | None:
        """The operator certificate of the running site (None on an insecure
        one), as the ``gatekeeper`` commands present it."""
        if self.site.gearman.insecure:
            return None
        assert self.site.gearman.tls_dir is not None
        return TlsFiles.for_role(self.site.gearman.tls_dir, Role.OPERATOR)

    def stop(self) -> None:
        if self.app is not None:
            self.app.stop()
        if self.sim is not None:
            self.sim.stop()

    # -- what people do ----------------------------------------------------
    def git_env(self, user: str) -> dict[str, str]:
        assert self.sim is not None
        ssh = cmdline.join(
            [
                "ssh",
                "-i",
                str(self.keys / user),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        )
        name, email, _ = USERS.get(user, (user, f"{user}@example.org", set()))
        return {
            **os.environ,
            "GIT_SSH_COMMAND": ssh,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_TERMINAL_PROMPT": "0",
        }

    def push_change(
        self,
        project: str,
        message: str,
        files: dict[str, str],
        user: str = "alice",
        branch: str = "master",
        change_id: str | None = None,
    ) -> tuple[int, int]:
        """Clone, commit ``files``, ``git push HEAD:refs/for/<branch>``.

        Returns (change number, patchset). Reusing a ``change_id`` makes a new
        patchset of that change.
        """
        assert self.sim is not None
        env = self.git_env(user)
        change_id = change_id or change_id_for(message)
        before = len(self.sim.events())
        with tempfile.TemporaryDirectory(prefix="push-", dir=self.root) as tmp:
            work = Path(tmp) / "repo"
            url = self.sim.git_url(project, user)
            _git(["clone", "-q", "--branch", branch, url, str(work)], env)
            for rel, content in files.items():
                path = work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            _git(["-C", str(work), "add", "-A"], env)
            full = f"{message.rstrip()}\n\nChange-Id: {change_id}\n"
            _git(["-C", str(work), "commit", "-q", "--allow-empty", "-F", "-"], env, stdin=full)
            _git(["-C", str(work), "push", "-q", "origin", f"HEAD:refs/for/{branch}"], env)
        for event in self.sim.events()[before:]:
            if event.get("type") == "patchset-created" and event["change"]["id"] == change_id:
                return int(event["change"]["number"]), int(event["patchSet"]["number"])
        raise SandboxError(f"pushing to {project} created no patchset")

    def gerrit(self, user: str, argv: list[str]) -> tuple[int, str, str]:
        """Run a Gerrit command over SSH as ``user`` (as ``ssh ... gerrit ...`` would)."""
        assert self.sim is not None
        client = ssh_client(self.sim.host, self.sim.port, user, self.keys / user, self.known_hosts)
        try:
            _, out, err = client.exec_command(cmdline.join(argv), timeout=60)
            text, errors = out.read().decode(), err.read().decode()
            return out.channel.recv_exit_status(), text, errors
        except paramiko.SSHException as exc:
            raise SandboxError(f"gerrit command as {user} failed: {exc}") from exc
        finally:
            client.close()

    def review(self, user: str, change: int, patchset: int, *options: str) -> None:
        status, out, err = self.gerrit(user, ["gerrit", "review", *options, f"{change},{patchset}"])
        if status != 0:
            raise SandboxError(f"gerrit review as {user} failed: {(err or out).strip()}")

    def approve(self, change: int, patchset: int, user: str = "bob") -> None:
        self.review(user, change, patchset, "--code-review", "2", "--label", "Workflow=1")

    def comment(self, change: int, patchset: int, message: str, user: str = "alice") -> None:
        self.review(user, change, patchset, "--message", message)

    # -- waiting -----------------------------------------------------------
    def settled(self) -> bool:
        """Every event Gerrit sent has reached the scheduler, and it has nothing left to do."""
        assert self.sim is not None and self.app is not None and self.app.scheduler is not None
        with self._delivered_lock:
            delivered = self.events_delivered
        return delivered >= len(self.sim.events()) and self.app.scheduler.is_settled()

    def wait_until_settled(self, timeout: float = 120.0) -> None:
        self.wait_for(self.settled, timeout, "the system to settle")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        stop = threading.Event()
        while not predicate():
            if time.monotonic() > deadline:
                raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")
            stop.wait(0.05)

    def connection_for(self, user: str) -> GerritConnection:
        assert self.sim is not None
        return GerritConnection(
            GerritConfig(
                host=self.sim.host,
                port=self.sim.port,
                user=user,
                key=self.keys / user,
                known_hosts=self.known_hosts,
            )
        )


def _git(args: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    result = subprocess.run(
        ["git", *args], env=env, input=stdin, text=True, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise SandboxError(f"git {args[0]} failed: {result.stderr.strip()}")


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
