"""Catch-up and reconciliation: no Gerrit event is lost, none is acted on twice.

The real daemon (scheduler, embedded Gearman, the SSH listener, the
catch-up thread, SQLite) against the Gerrit simulator over SSH. No worker
runs: what is measured is what the scheduler enqueues, read from its log
("enqueued X in P", and "X is already in P" for an event acted on twice),
one expected enqueue per trigger event.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gear
import pytest

from gatekeeper.app import Gatekeeper
from gatekeeper.config.site import (
    GearmanConfig,
    GearmanServer,
    GerritConfig,
    GerritHttpConfig,
    SiteConfig,
)
from gatekeeper.dispatch.certs import Role, TlsFiles
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.gerrit.catchup import CATCHUP_OPTIONS, synthesize
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.events import parse_event
from gatekeeper.gerrit.ledger import event_key
from gatekeeper.model.change import Change
from gatekeeper.sandbox.gerrit_sim import GerritSimulator
from gatekeeper.sandbox.harness import USERS, change_id_for, make_key
from listeners.gerrit import GerritListener
from tests.fixtures.db import postgres_server_url, scratch_postgres_database
from tests.fixtures.gearmand import issued

pytestmark = pytest.mark.timeout(240)

PROJECTS = ("demo/alpha", "demo/beta", "demo/gamma")

# One pipeline per kind of trigger event, so that each event of the story
# below should enqueue one (change, patchset, pipeline) exactly once.
LAYOUT = r"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: recheck
    manager: independent
    trigger:
      gerrit:
        - event: comment-added
          comment: (?s)\APatch Set [0-9]+:\n\nrecheck\Z
  - name: experimental
    manager: independent
    trigger:
      gerrit:
        - event: comment-added
          comment: (?s)\APatch Set [0-9]+:\n\ncheck experimental\Z
  - name: review
    manager: independent
    trigger:
      gerrit:
        - event: comment-added
          username: ^bob$
          approval:
            - code-review: 2
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          username: ^bob$
          approval:
            - workflow: 1
jobs:
  - name: noop
    node: never-booted
    run: "true"
projects:
""" + "".join(
    f"  - name: {p}\n    check: [noop]\n    recheck: [noop]\n    experimental: [noop]\n"
    f"    review: [noop]\n    gate: [noop]\n"
    for p in PROJECTS
)


class EnqueueLog(logging.Handler):
    """Counts, per (change, patchset, pipeline), how often the scheduler acted
    on an event that wanted it enqueued: "enqueued" or "already in"."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.acted: Counter[tuple[int, int, str]] = Counter()
        self.not_enqueued: list[str] = []
        self._lock_counts = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg in ("enqueued %s in %s%s", "%s is already in %s") and args:
            change = args[0]
            if isinstance(change, Change):
                with self._lock_counts:
                    self.acted[(change.number, change.patchset, str(args[1]))] += 1
        elif record.msg == "%s not enqueued in %s: %s":
            self.not_enqueued.append(record.getMessage())

    def snapshot(self) -> Counter[tuple[int, int, str]]:
        with self._lock_counts:
            return Counter(self.acted)


class JobHolder:
    """A real Gearman worker that takes ``build:noop`` and never finishes it:
    items stay queued, nothing is reported, so the scheduler's work is the
    events alone, and an event acted on twice shows as "already in"."""

    def __init__(self, host: str, port: int, tls: TlsFiles | None) -> None:
        self.worker = gear.TextWorker("holder")
        self.worker.addServer(host, port, **gear_kwargs(tls))
        self.worker.waitForServer()
        self.worker.registerFunction("build:noop")
        self.jobs: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="job-holder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                job = self.worker.getJob()
            except gear.InterruptedError:
                return
            self.jobs.append(job)

    def stop(self) -> None:
        self.worker.shutdown()


@dataclass
class Stack:
    """Simulator + daemon, and the people who use them."""

    root: Path
    sim: GerritSimulator
    site: SiteConfig
    app: Gatekeeper | None = None
    listener: GerritListener | None = None
    log: EnqueueLog = field(default_factory=EnqueueLog)
    holder: JobHolder | None = None
    _conns: dict[str, GerritConnection] = field(default_factory=dict)
    _work: dict[str, Path] = field(default_factory=dict)
    projects: dict[int, str] = field(default_factory=dict)

    def start_daemon(self) -> None:
        assert self.site.gerrit is not None
        self.listener = GerritListener(
            GerritConnection(self.site.gerrit), backoff_start=0.05, backoff_max=0.2
        )
        self.app = Gatekeeper(
            self.site,
            listener=self.listener,
            components=frozenset({"gearman", "scheduler"}),
            worker_name="catchup-test",
        )
        self.app.start()
        host, port = self.app.gearman_servers[0]
        assert self.app.site.gearman.tls_dir is not None
        self.holder = JobHolder(
            host, port, issued(self.app.site.gearman.tls_dir, Role.WORKER, "holder")
        )
        assert self.listener.connected.wait(30)

    def stop_daemon(self) -> None:
        if self.holder is not None:
            self.holder.stop()
            self.holder = None
        if self.app is not None:
            self.app.stop()
            self.app = None

    def conn(self, user: str) -> GerritConnection:
        if user not in self._conns:
            assert self.site.gerrit is not None
            self._conns[user] = GerritConnection(
                self.site.gerrit.model_copy(update={"user": user, "key": self.root / "keys" / user})
            )
        return self._conns[user]

    def close(self) -> None:
        self.stop_daemon()
        for conn in self._conns.values():
            conn.close()

    # -- what people do -----------------------------------------------------
    def _git(self, project: str, *args: str) -> str:
        work = self._work[project]
        proc = subprocess.run(
            ["git", "-C", str(work), *args],
            env=self._git_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"git {args[0]} failed: {proc.stderr}")
        return proc.stdout.strip()

    def _git_env(self) -> dict[str, str]:
        ssh = (
            f"ssh -i {self.root / 'keys' / 'alice'} -o IdentitiesOnly=yes -o BatchMode=yes"
            f" -o UserKnownHostsFile={self.root / 'known_hosts'} -o StrictHostKeyChecking=yes"
            " -o LogLevel=ERROR"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        name, email, _ = USERS["alice"]
        env.update(
            GIT_SSH_COMMAND=ssh,
            GIT_AUTHOR_NAME=name,
            GIT_AUTHOR_EMAIL=email,
            GIT_COMMITTER_NAME=name,
            GIT_COMMITTER_EMAIL=email,
        )
        return env

    def push(
        self, project: str, change_id: str, content: str, base: str = "", body: str = ""
    ) -> tuple[int, int]:
        """Push a commit (a new change, or a new patchset when ``base`` is the
        previous patchset's sha), ``body`` in its message; returns (change, patchset)."""
        if project not in self._work:
            work = self.root / "work" / project.replace("/", "_")
            work.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "clone", "-q", self.sim.git_url(project, "alice"), str(work)],
                env=self._git_env(),
                check=True,
                capture_output=True,
            )
            self._work[project] = work
        self._git(project, "checkout", "-q", "--detach", "origin/master")
        (self._work[project] / f"{change_id}.txt").write_text(content)
        self._git(project, "add", "-A")
        message = f"Change {change_id[:8]}\n\n{body}Change-Id: {change_id}\n"
        # From a file: a message of megabytes is too long for an argument.
        message_file = self.root / "message.txt"
        message_file.write_text(message)
        self._git(project, "commit", "-q", "-F", str(message_file))
        before = len(self.sim.events())
        self._git(project, "push", "-q", "origin", "HEAD:refs/for/master")
        for event in self.sim.events()[before:]:
            if event["type"] == "patchset-created" and event["change"]["id"] == change_id:
                return int(event["change"]["number"]), int(event["patchSet"]["number"])
        raise AssertionError(f"pushing {change_id} created no patchset")

    def review(self, user: str, change: int, ps: int, message: str = "", **labels: int) -> None:
        project = self.projects.get(change) or self.sim.get_change(change).project
        self.projects[change] = project
        votes = {k.replace("_", "-"): v for k, v in labels.items()}
        self.conn(user).review(project, change, ps, message, votes)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        pause.wait(0.05)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []
    sims: list[GerritSimulator] = []

    def make(
        reconcile_interval: float = 600.0,
        margin: float = 60.0,
        database: str = "",
        max_event_bytes: int | None = None,
        gerrit: tuple[str, str] = ("3.11.1", "ssh"),
    ) -> Stack:
        """``gerrit``: the simulator's version, and whether the daemon reads
        changes over SSH or REST (the stream is SSH either way)."""
        root = tmp_path / "stack"
        root.mkdir()
        version, transport = gerrit
        sim = GerritSimulator(root / "gerrit", version=version)
        for user, (name, email, groups) in USERS.items():
            sim.add_account(user, name, email, make_key(root / "keys" / user), set(groups))
        for project in PROJECTS:
            sim.create_project(project, {"README": f"{project}\n"})
        sim.start()
        sims.append(sim)
        (root / "known_hosts").write_text(sim.known_hosts_line() + "\n")
        (root / "layout.yaml").write_text(LAYOUT)
        site = SiteConfig.model_validate(
            {
                "layout": root / "layout.yaml",
                "state-dir": root / "state",
                "gearman": GearmanConfig(listen=GearmanServer(host="127.0.0.1", port=0)),
                "database": database,
                # Any free port: a fixed one is taken by other runs on the machine.
                "web": {"listen": {"host": "127.0.0.1", "port": 0}},
            }
        )
        site.gerrit = GerritConfig(
            host=sim.host,
            port=sim.port,
            user="gatekeeper",
            key=root / "keys" / "gatekeeper",
            known_hosts=root / "known_hosts",
            reconcile_interval=reconcile_interval,
            catchup_margin=margin,
        )
        if max_event_bytes is not None:
            site.gerrit.max_event_bytes = max_event_bytes
        if transport == "rest":
            site.gerrit.http = GerritHttpConfig(
                url=sim.start_http(), user="gatekeeper", password="s3cret-http"
            )
            sim.set_http_password("gatekeeper", "s3cret-http")
            # Without the events-log plugin: the query-based catch-up, over
            # REST (test_catchup_replay covers the replay).
            sim.events_log(False)
        stack = Stack(root, sim, site.resolve(root))
        stacks.append(stack)
        return stack

    manager_log = logging.getLogger("gatekeeper.scheduler.manager")
    level = manager_log.level
    manager_log.setLevel(logging.INFO)
    try:
        yield make
    finally:
        for stack in stacks:
            manager_log.removeHandler(stack.log)
            stack.close()
        for sim in sims:
            sim.stop()
        manager_log.setLevel(level)


def caught_up_over(stack: Stack) -> set[str]:
    """How the daemon's catch-up queries reached Gerrit: "rest" when the
    simulator's REST side answered an age query of gatekeeper's, "ssh" else."""
    rest = [q for user, q in stack.sim.rest.queries if user == "gatekeeper" and "age:" in q]
    return {"rest"} if rest else {"ssh"}


def attach(stack: Stack) -> None:
    logging.getLogger("gatekeeper.scheduler.manager").addHandler(stack.log)


def settle_with_a_catch_up(stack: Stack) -> None:
    """One more catch-up over everything, and wait until the scheduler has
    processed it: any event still to be acted on twice would be by now."""
    app = stack.app
    assert app is not None and app.catch_up is not None and app.scheduler is not None
    runs = app.catch_up.runs
    asked = time.time()
    app.catch_up.request("test: last look")
    wait_for(lambda: app.catch_up.runs > runs, 60, "the last catch-up")  # type: ignore[union-attr]
    ledger = app.scheduler.ledger
    wait_for(
        lambda: (ledger.caught_up_to() or 0) >= asked,
        60,
        "the scheduler to process the last catch-up",
    )


def results_row(
    fault: str, injected: int, expected: set[Any], acted: Counter[Any]
) -> dict[str, Any]:
    lost = [key for key in expected if acted[key] == 0]
    duplicated = [key for key in expected if acted[key] > 1]
    unexpected = [key for key in acted if key not in expected]
    row = {
        "fault": fault,
        "injected": injected,
        "expected": len(expected),
        "acted on": sum(1 for key in expected if acted[key] > 0),
        "lost": len(lost),
        "duplicated": len(duplicated) + len(unexpected),
    }
    print(
        "\n{fault:<34} {injected:>8} {expected:>9} {acted on:>9} {lost:>5} {duplicated:>11}".format(
            **row
        )
    )
    return row


@pytest.mark.parametrize("version", ["3.11.1", "2.13"])
def test_query_rows_rebuild_the_simulators_events(
    stack_factory: Callable[..., Stack], version: str
) -> None:
    """Contract: the simulator's ``--comments``/``--all-approvals`` rows give
    back the stream's events, key for key (what de-duplication relies on)."""
    stack = stack_factory(gerrit=(version, "ssh"))
    started = time.time()
    number, ps = stack.push("demo/alpha", change_id_for("a"), "one\n")
    stack.review("bob", number, ps, "", Code_Review=2)
    stack.review("alice", number, ps, "recheck")
    stack.review("bob", number, ps, "", Workflow=1)
    number2, ps2 = stack.push("demo/alpha", stack.sim.get_change(number).change_id, "two\n")
    assert (number2, ps2) == (number, 2)
    stack.review("alice", number, 2, "hostile $(touch /tmp/pwned) `id`; 'quote\" \\n")
    stream = [parse_event(json.dumps(e)) for e in stack.sim.events()]
    stream_keys = {event_key(e).stored() for e in stream if e and event_key(e)}  # type: ignore[union-attr]
    rows = stack.conn("gatekeeper").query_all(
        f"-age:{int(time.time() - started) + 5}s", *CATCHUP_OPTIONS
    )
    rebuilt = synthesize(rows, started - 5)
    rebuilt_keys = {event_key(e).stored() for e in rebuilt if event_key(e)}  # type: ignore[union-attr]
    assert len(stream_keys) == 6
    for key in stream_keys:
        base, _, at = key.partition("@")
        assert any(r.partition("@")[0] == base for r in rebuilt_keys), key
        if at:
            [twin] = [r for r in rebuilt_keys if r.partition("@")[0] == base]
            assert abs(int(twin.partition("@")[2]) - int(at)) <= 2
    assert not Path("/tmp/pwned").exists()


@dataclass
class Step:
    """One thing a person does, and the enqueue it should cause (if any)."""

    user: str
    kind: str
    change: int = 0
    patchset: int = 0

    @property
    def pipeline(self) -> str | None:
        return {
            "push": "check",
            "code-review": "review",
            "workflow": "gate",
            "recheck": "recheck",
            "experimental": "experimental",
        }.get(self.kind)


COMMENT_STEPS = (
    ("bob", "code-review"),
    ("bob", "workflow"),
    ("alice", "recheck"),
    ("alice", "experimental"),
    ("alice", "chatter"),
)


def act(stack: Stack, step: Step, change_ids: dict[int, str], projects: dict[int, str]) -> None:
    if step.kind == "push":
        number, ps = stack.push(
            projects[step.change], change_ids[step.change], f"{time.time_ns()}\n"
        )
        assert (number, ps) == (step.change, step.patchset)
    elif step.kind == "code-review":
        stack.review(step.user, step.change, step.patchset, "", Code_Review=2)
    elif step.kind == "workflow":
        stack.review(step.user, step.change, step.patchset, "", Workflow=1)
    elif step.kind == "recheck":
        stack.review(step.user, step.change, step.patchset, "recheck")
    elif step.kind == "experimental":
        stack.review(step.user, step.change, step.patchset, "check experimental")
    else:
        stack.review(step.user, step.change, step.patchset, "looks fine; no recheck needed")


def test_stream_cut_twenty_times_loses_and_repeats_nothing(
    stack_factory: Callable[..., Stack],
) -> None:
    """504 events on 42 changes (new patchsets, approvals, rechecks, chatter);
    the SSH stream is cut 20 times, and events are produced in every gap."""
    stack = stack_factory()
    stack.start_daemon()
    attach(stack)
    app, sim, listener = stack.app, stack.sim, stack.listener
    assert app is not None and app.scheduler is not None and listener is not None

    changes = 42
    change_ids: dict[int, str] = {}
    projects: dict[int, str] = {}
    # Change numbers are handed out in push order, from 1.
    steps: list[Step] = []
    for ps in (1, 2):
        for n in range(1, changes + 1):
            steps.append(Step("alice", "push", n, ps))
        for user, kind in COMMENT_STEPS:
            for n in range(1, changes + 1):
                steps.append(Step(user, kind, n, ps))
    for n in range(1, changes + 1):
        change_ids[n] = change_id_for(f"change {n}")
        projects[n] = PROJECTS[n % len(PROJECTS)]
    assert len(steps) == 504
    expected = {(s.change, s.patchset, s.pipeline) for s in steps if s.pipeline}

    cuts, in_gaps = 20, 2
    every = len(steps) // (cuts + 1)
    opened_before = listener.opened
    began = time.monotonic()
    done_cuts = 0
    withheld_until = -1
    for index, step in enumerate(steps):
        if index and index % every == 0 and done_cuts < cuts:
            # A cut of a live stream each time (not of one still reconnecting).
            wait_for(lambda: sim.stream_count() == 1, 30, "the stream to reconnect")
            assert sim.cut_streams() == 1
            done_cuts += 1
            # The next events happen while the stream is down.
            sim.withhold_events(True)
            withheld_until = index + in_gaps
        act(stack, step, change_ids, projects)
        if index + 1 == withheld_until:
            sim.withhold_events(False)
    assert done_cuts == cuts
    produced = time.monotonic()

    wait_for(
        lambda: expected <= set(stack.log.snapshot()),
        120,
        "every expected enqueue",
    )
    settle_with_a_catch_up(stack)
    acted = stack.log.snapshot()
    after = time.monotonic() - produced
    print(f"\nproduced in {produced - began:.1f}s, all acted on {after:.1f}s later")

    # And the same events once more, straight to the scheduler, as a catch-up
    # that had not filtered them would send them: each is skipped.
    rows = stack.conn("gatekeeper").query_all("-age:1h", *CATCHUP_OPTIONS)
    rebuilt = synthesize(rows, 0)
    skipped_before = app.scheduler.ledger.skipped
    for event in rebuilt:
        app.scheduler.put_trigger(event)
    settle_with_a_catch_up(stack)
    assert app.scheduler.ledger.skipped - skipped_before >= len(expected)
    assert stack.log.snapshot() == acted

    row = results_row("stream cut (SSH connection dropped)", cuts, expected, acted)
    assert listener.opened - opened_before >= cuts
    # Every gap had events in it, and the catch-ups brought them.
    assert sim.unstreamed_events >= cuts * in_gaps
    assert app.catch_up is not None and app.catch_up.events_sent >= cuts * in_gaps
    assert (row["lost"], row["duplicated"]) == (0, 0), stack.log.not_enqueued[:5]
    assert row["acted on"] == len(expected) == 420


V3_SSH, V2_SSH, V3_REST, V2_REST = (
    ("3.11.1", "ssh"),
    ("2.13", "ssh"),
    ("3.11.1", "rest"),
    ("2.13", "rest"),
)


@pytest.mark.parametrize(
    "notice,interval,gerrit",
    [
        # Gerrit says it dropped output: a catch-up runs at once (the periodic
        # one is 10 minutes away).
        pytest.param(True, 600.0, V3_SSH, id="dropped-output-then-silence"),
        # Gerrit drops the event without a word (or the notice is lost too):
        # only the periodic reconciliation can find it.
        pytest.param(False, 1.0, V3_SSH, id="silent-loss-periodic-reconcile"),
        # The other dialect, and the catch-up's query over REST.
        pytest.param(True, 600.0, V2_SSH, id="dropped-output-2.13-ssh"),
        pytest.param(True, 600.0, V3_REST, id="dropped-output-3.11-rest"),
        pytest.param(False, 1.0, V2_REST, id="silent-loss-2.13-rest"),
    ],
)
def test_an_approval_gerrit_dropped_is_still_enqueued(
    stack_factory: Callable[..., Stack], notice: bool, interval: float, gerrit: tuple[str, str]
) -> None:
    stack = stack_factory(reconcile_interval=interval, gerrit=gerrit)
    stack.start_daemon()
    attach(stack)
    app, sim = stack.app, stack.sim
    assert app is not None and app.catch_up is not None
    number, ps = stack.push("demo/beta", change_id_for("dropped"), "x\n")
    wait_for(lambda: (number, ps, "check") in stack.log.snapshot(), 30, "the check enqueue")

    runs = app.catch_up.runs
    sim.withhold_events(True)
    stack.review("bob", number, ps, "", Workflow=1)
    sim.withhold_events(False)
    if notice:
        sim.send_dropped_output()
    # Silence: nothing more happens on Gerrit.
    wait_for(lambda: (number, ps, "gate") in stack.log.snapshot(), 30, "the gate enqueue")
    assert app.catch_up.runs > runs
    if notice:
        assert stack.listener is not None and stack.listener.dropped_output == 1
    settle_with_a_catch_up(stack)
    acted = stack.log.snapshot()
    fault = "dropped-output, then silence" if notice else "event dropped silently"
    row = results_row(fault, 1, {(number, ps, "check"), (number, ps, "gate")}, acted)
    assert (row["lost"], row["duplicated"]) == (0, 0)
    assert sim.unstreamed_events == 1
    assert caught_up_over(stack) == {gerrit[1]}


def test_a_change_with_a_two_megabyte_commit_message_is_enqueued_from_the_stream(
    stack_factory: Callable[..., Stack],
) -> None:
    """Every event of a change carries its commit message: a 2 MB message
    once made each of its stream lines too long to read, so the change
    waited for the periodic reconciliation (10 minutes away here) and its
    approval was skipped as well."""
    stack = stack_factory(reconcile_interval=600.0)
    stack.start_daemon()
    attach(stack)
    app, listener = stack.app, stack.listener
    assert app is not None and app.catch_up is not None and listener is not None
    # The catch-up every stream opening asks for is over before the push.
    wait_for(lambda: app.catch_up.runs >= 1, 30, "the first catch-up")  # type: ignore[union-attr]
    body = "".join(f"line {i:07d} of a long story {'x' * 40}\n" for i in range(40_000))
    assert len(body) > 2_000_000
    runs = app.catch_up.runs
    number, ps = stack.push("demo/alpha", change_id_for("big message"), "x\n", body=body)
    wait_for(lambda: (number, ps, "check") in stack.log.snapshot(), 60, "the check enqueue")
    stack.review("bob", number, ps, "", Workflow=1)
    wait_for(lambda: (number, ps, "gate") in stack.log.snapshot(), 60, "the gate enqueue")
    # Read from the stream: no line skipped, no catch-up needed to find them.
    assert (listener.skipped_lines, listener.overlong_lines) == (0, 0)
    assert app.catch_up.runs == runs


def test_a_line_over_the_limit_starts_a_catch_up_and_the_next_lines_are_read(
    stack_factory: Callable[..., Stack], caplog: pytest.LogCaptureFixture
) -> None:
    """A line longer than ``gerrit.max-event-bytes`` (lowered here to 64 KiB)
    is skipped without being held, logged with its size, and asks Gerrit at
    once for what it held (the periodic reconciliation is 10 minutes away);
    the events after it on the same stream are read as usual."""
    caplog.set_level(logging.ERROR, logger="listeners.gerrit")
    stack = stack_factory(reconcile_interval=600.0, max_event_bytes=64 * 1024)
    stack.start_daemon()
    attach(stack)
    app, listener = stack.app, stack.listener
    assert app is not None and app.catch_up is not None and listener is not None
    opened = listener.opened
    wait_for(lambda: app.catch_up.runs >= 1, 30, "the first catch-up")  # type: ignore[union-attr]
    body = "\x1b[31mforged\n" + "y" * (200 * 1024) + "\n"
    big, big_ps = stack.push("demo/beta", change_id_for("over the limit"), "x\n", body=body)
    wait_for(lambda: (big, big_ps, "check") in stack.log.snapshot(), 60, "the catch-up's enqueue")
    assert listener.overlong_lines == 1
    [record] = [r for r in caplog.records if "over the limit" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message and len(message) < 600
    # The same stream, still open, brings the next change's events.
    small, small_ps = stack.push("demo/beta", change_id_for("small"), "y\n")
    wait_for(lambda: (small, small_ps, "check") in stack.log.snapshot(), 60, "the next enqueue")
    assert listener.opened == opened and listener.skipped_lines == 0
    settle_with_a_catch_up(stack)
    acted = stack.log.snapshot()
    row = results_row(
        "line over the limit", 1, {(big, big_ps, "check"), (small, small_ps, "check")}, acted
    )
    assert (row["lost"], row["duplicated"]) == (0, 0)


@pytest.mark.parametrize(
    "database,gerrit",
    [
        pytest.param("sqlite", V3_SSH, id="sqlite"),
        pytest.param("postgresql", V3_SSH, id="postgresql", marks=pytest.mark.postgresql),
        pytest.param("sqlite", V2_SSH, id="sqlite-2.13-ssh"),
        pytest.param("sqlite", V3_REST, id="sqlite-3.11-rest"),
        pytest.param("sqlite", V2_REST, id="sqlite-2.13-rest"),
    ],
)
def test_a_restarted_scheduler_catches_up_on_what_happened_while_it_was_down(
    stack_factory: Callable[..., Stack], database: str, gerrit: tuple[str, str]
) -> None:
    if database == "postgresql":
        with scratch_postgres_database(postgres_server_url()) as url:
            stack = stack_factory(database=url, gerrit=gerrit)
            try:
                restart_story(stack)
            finally:
                stack.close()  # before its database is dropped
    else:
        stack = stack_factory(gerrit=gerrit)
        restart_story(stack)
        assert caught_up_over(stack) == {gerrit[1]}


def restart_story(stack: Stack) -> None:
    stack.start_daemon()
    attach(stack)
    first, ps = stack.push("demo/gamma", change_id_for("before"), "x\n")
    wait_for(lambda: (first, ps, "check") in stack.log.snapshot(), 30, "the check enqueue")
    settle_with_a_catch_up(stack)
    stack.stop_daemon()

    # While gatekeeper is down: an approval and a new change.
    stack.review("bob", first, ps, "", Workflow=1)
    second, ps2 = stack.push("demo/gamma", change_id_for("while down"), "y\n")

    stack.start_daemon()  # the same database: it knows what it acted on
    expected = {(first, ps, "check"), (first, ps, "gate"), (second, ps2, "check")}
    wait_for(lambda: expected <= set(stack.log.snapshot()), 30, "the missed enqueues")
    settle_with_a_catch_up(stack)
    row = results_row("scheduler down (restart)", 1, expected, stack.log.snapshot())
    assert (row["lost"], row["duplicated"]) == (0, 0)


def test_query_all_follows_pages_and_age_keeps_to_the_window(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    numbers = {stack.push("demo/alpha", change_id_for(f"p{i}"), f"{i}\n")[0] for i in range(5)}
    gerrit = stack.conn("gatekeeper")
    rows = gerrit.query_all("-age:1h limit:2", *CATCHUP_OPTIONS)
    assert sorted(int(r["number"]) for r in rows) == sorted(numbers)
    # Nothing was updated an hour ago or more.
    assert gerrit.query_all("age:1h") == []
    old = gerrit.query_all("before:2000-01-01")
    assert old == [] and len(gerrit.query_all("after:2000-01-01T00:00:00")) == 5
