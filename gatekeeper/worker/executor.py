"""Runs one build: claim a node, prepare the workspace, run the job, archive logs."""

from __future__ import annotations

import logging
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Protocol

from gatekeeper.db.images import ImageStore
from gatekeeper.dispatch.protocol import JOB_KEY, JobSpec
from gatekeeper.errors import (
    DispatchError,
    MergeConflictError,
    PoolError,
    TransportError,
    WorkspaceError,
)
from gatekeeper.git.refs import parse_zuul_changes
from gatekeeper.kit import DEVSTACK_GATE
from gatekeeper.model.build import BuildResult
from gatekeeper.model.outside import shown
from gatekeeper.model.results import CompleteData, NodeWait, Recognised, StartData
from gatekeeper.node.transport import CommandAborted, CommandTimedOut, Transport
from gatekeeper.node.transport_local import LocalTransport
from gatekeeper.worker.archive import log_url, safe_log_dir, vet, write_index
from gatekeeper.worker.workspace import RepoState, WorkspaceBuilder

if TYPE_CHECKING:
    from gatekeeper.db.nodes import NodeStore
    from gatekeeper.db.tables import Node

log = logging.getLogger(__name__)
console_log = logging.getLogger("gatekeeper.console")

CONSOLE = "console.txt"
#: Where the job kit is put in every workspace (the default layout's devstack
#: job runs ``$WORKSPACE/.gatekeeper/kit/devstack-gate/devstack-vm-gate-wrap.sh``).
KIT_DIR = ".gatekeeper/kit"
#: The exit status of a job that ran out of time on its own watch (GNU
#: timeout's): the kit's wrap kills its gate hook before the build's timeout
#: so that it can still collect the logs, then exits with it.
TIMED_OUT_STATUS = 124

#: Results whose node is held for people to look at: the job itself failed,
#: or ran out of time (the build developers most want to log in to). An
#: aborted or canceled build (an operator's or a newer patchset's doing), an
#: ERROR (the worker's or the node's), a merge conflict and a success leave
#: nothing worth a server for a day.
HELD_RESULTS = frozenset({BuildResult.FAILURE, BuildResult.TIMED_OUT})


#: Names the known failures in a failed build's logs:
#: ``(uuid, log_dir, job, project, branch)`` -> what was found.
Recognise = Callable[[str, Path, str, str, str], list[Recognised]]


class Reaches(Protocol):
    """What the executor needs of a node's provider: how to reach the node
    (every :class:`gatekeeper.pool.providers.base.Provider` does)."""

    def transport(self, node: Node) -> Transport: ...


#: The node facts, in the workspace on the node (the devstack kit's wrap
#: copies it into logs/): shell assignments, quoted, for ``source``.
NODE_FACTS = ".gatekeeper/node.env"


def node_facts(node: Node) -> dict[str, str]:
    """Where a build runs, as its job and its logs see it (devstack-gate's
    ``/etc/nodepool/provider`` habit, and what per-provider statistics
    read): the provider, the node, its label, and the cloud's region and
    availability zone ("" where the provider reports none)."""
    return {
        "NODE_PROVIDER": node.provider,
        "NODE_NAME": node.name,
        "NODE_LABEL": node.label,
        "NODE_REGION": node.region,
        "NODE_AZ": node.availability_zone,
    }


def write_node_facts(workspace: Path, facts: Mapping[str, str]) -> None:
    """``workspace/.gatekeeper/node.env``. The values are quoted: a zone name
    is the cloud's text, and the file is sourced by bash on the node."""
    path = workspace / NODE_FACTS
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={shlex.quote(value)}" for key, value in facts.items()]
    path.write_text(
        "# Where this build ran (written by gatekeeper's worker).\n" + "\n".join(lines) + "\n"
    )


class _Console:
    """console.txt of one build, plus the live callback. Written from the build's
    thread and from whatever thread the transport reads output on."""

    def __init__(self, path: Path, sink: Callable[[str], None]) -> None:
        self._fh: IO[str] = open(path, "a", encoding="utf-8", errors="replace")
        self._sink = sink
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._fh.write(text + "\n")
            self._fh.flush()
        try:
            self._sink(text)
        except Exception:
            log.exception("console callback failed")

    def __enter__(self) -> _Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._fh.close()


class BuildExecutor:
    """Runs builds, one per call of :meth:`run`; owned by the Worker, whose
    build threads call :meth:`run` concurrently (it keeps no per-build state).

    ``git_url`` is Gerrit's base git URL (``ZUUL_URL`` is used when empty);
    ``log_url_base`` is the URL ``log_root`` is published under.
    ``on_request`` nudges the pool when a node request is made.
    ``is_canceled(uuid)`` tells whether the scheduler dequeued the build
    while it waited in Gearman.
    ``console`` receives every console line (without the build's uuid);
    by default lines go to the ``gatekeeper.console`` logger.
    ``job_timeout`` is the timeout of a job whose spec gives none (0).
    ``hold_max(label)`` caps the held nodes of a label (None: no cap).
    ``describe_wait(label, waited)`` says what the pool had when a build
    gave up waiting for a node (its NODE_FAILURE report shows it).
    ``log_max_bytes`` caps the log files collected from one build.
    ``recognise(uuid, log_dir, job, project, branch)`` names the known
    failures in a failed build's archived logs (see :mod:`.recognise`).
    """

    def __init__(
        self,
        nodes: NodeStore,
        providers: Mapping[str, Reaches],
        workspace: WorkspaceBuilder,
        git_url: str,
        log_root: Path,
        log_url_base: str,
        state_dir: Path,
        node_wait: float = 600.0,
        hold_seconds: float = 24 * 3600.0,
        console: Callable[[str], None] | None = None,
        on_request: Callable[[], None] | None = None,
        claim_interval: float = 0.2,
        is_canceled: Callable[[str], bool] | None = None,
        job_timeout: float = 3600.0,
        hold_max: Callable[[str], int] | None = None,
        describe_wait: Callable[[str, float], NodeWait] | None = None,
        log_max_bytes: int = 300 * 2**20,
        recognise: Recognise | None = None,
    ) -> None:
        self.nodes = nodes
        self.providers = providers
        self.workspace = workspace
        self.git_url = git_url
        self.log_root = Path(log_root)
        self.log_url_base = log_url_base
        self.state_dir = Path(state_dir)
        self.node_wait = node_wait
        self.hold_seconds = hold_seconds
        self.console = console
        self.on_request = on_request
        self.claim_interval = claim_interval
        self.is_canceled = is_canceled
        self.job_timeout = job_timeout
        self.hold_max = hold_max
        self.describe_wait = describe_wait
        self.log_max_bytes = log_max_bytes
        self.recognise = recognise

    # -- node ----------------------------------------------------------------

    def _claim(self, label: str, worker: str, uuid: str, stop: threading.Event) -> Node | None:
        """A claimed node, or None when none came within ``node_wait`` or ``stop`` was set.

        :raises PoolError: the database refused.
        """
        node = self.nodes.claim(label, worker, uuid)
        if node is not None:
            return node
        request_id = self.nodes.request(label, worker, uuid)
        try:
            if self.on_request is not None:
                try:
                    self.on_request()
                except Exception:
                    log.exception("pool wake-up failed")
            deadline = time.monotonic() + self.node_wait
            while time.monotonic() < deadline:
                if stop.wait(self.claim_interval):
                    return None
                node = self.nodes.claim(label, worker, uuid)
                if node is not None:
                    return node
            return None
        finally:
            try:
                self.nodes.cancel_request(request_id)
            except Exception:
                log.exception("could not cancel node request %s", request_id)

    # -- build ---------------------------------------------------------------

    def run(
        self,
        params: dict[str, str],
        spec: JobSpec,
        worker_name: str,
        stop: threading.Event,
        on_start: Callable[[StartData], None],
    ) -> CompleteData:
        """Run one build to its end and say how it ended.

        :raises DispatchError: the parameters lack ZUUL_UUID (nothing to report against).
        """
        uuid = params.get("ZUUL_UUID", "")
        if not uuid:
            raise DispatchError(f"build of {spec.name} has no ZUUL_UUID")

        def done(result: str, error: str) -> CompleteData:
            return CompleteData(uuid=uuid, result=str(result), worker=worker_name, error=error)

        try:
            log_dir = safe_log_dir(self.log_root, params.get("LOG_PATH", ""))
        except ValueError as exc:
            log.warning("build %s refused: %s", uuid, exc)
            return done(BuildResult.ERROR, str(exc))
        url = log_url(self.log_url_base, params["LOG_PATH"])

        if stop.is_set():
            return done(BuildResult.ABORTED, "aborted before it started")
        if self.is_canceled is not None and self.is_canceled(uuid):
            # Dequeued while it waited in Gearman (no Gearman server can
            # withdraw a queued job): do not spend a node on it.
            log.info("build %s was canceled before it started", uuid)
            return done(BuildResult.CANCELED, "canceled before it started")
        waiting_since = time.monotonic()
        try:
            node = self._claim(spec.node, worker_name, uuid, stop)
        except PoolError as exc:
            log.warning("build %s: claim failed: %s", uuid, exc)
            return done(BuildResult.NODE_FAILURE, str(exc))
        if node is None:
            if stop.is_set():
                return done(BuildResult.ABORTED, "aborted while waiting for a node")
            return self._node_failure(done, spec.node, round(time.monotonic() - waiting_since, 1))

        started_at = time.time()
        result: str = BuildResult.ERROR
        error = conflict = ""
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            try:
                on_start(self._start_data(uuid, worker_name, node, url, started_at))
            except Exception:
                log.exception("build %s: start callback failed", uuid)
            sink = self.console or (lambda line: console_log.info("%s %s", uuid[:7], line))
            with _Console(log_dir / CONSOLE, sink) as console:
                try:
                    result, error = self._build(params, spec, node, uuid, stop, log_dir, console)
                except MergeConflictError as exc:
                    console.line(f"MERGER_FAILURE: {exc}")
                    result, error, conflict = BuildResult.MERGER_FAILURE, str(exc), exc.change
                console.line(f"gatekeeper build {uuid} result {result}")
            write_index(log_dir)
        except Exception as exc:
            # Whatever broke, the node is released below and the build reported.
            log.exception("build %s failed in the worker", uuid)
            result, error = BuildResult.ERROR, f"worker error: {exc}"
        finally:
            self._release(node, result in HELD_RESULTS, f"build {uuid} {result}")
        recognised: list[Recognised] = []
        if result in HELD_RESULTS and self.recognise is not None:
            # After the release: the node is not kept waiting for the scan.
            try:
                recognised = self.recognise(
                    uuid,
                    log_dir,
                    spec.name,
                    params.get("ZUUL_PROJECT", ""),
                    params.get("ZUUL_BRANCH", ""),
                )
            except Exception:
                log.exception("build %s: the search for known failures failed", uuid)
        return CompleteData(
            uuid=uuid,
            result=str(result),
            error=error,
            worker=worker_name,
            url=url,
            node=node.name,
            provider=node.provider,
            started_at=started_at,
            ended_at=time.time(),
            conflict=conflict,
            recognised=recognised,
        )

    def _start_data(
        self, uuid: str, worker: str, node: Node, url: str, started_at: float
    ) -> StartData:
        """The start, saying where the build runs (kept with the build: the
        node's row goes when the node does)."""
        built_at = None
        if node.image:
            try:
                built_at = ImageStore(self.nodes.db).built_at(node.image)
            except Exception:
                # Only the image's age is missing from the record.
                log.exception("build %s: could not read image %s", uuid, node.image)
        return StartData(
            uuid,
            worker,
            node.name,
            node.provider,
            url,
            started_at,
            region=node.region,
            availability_zone=node.availability_zone,
            label=node.label,
            image=node.image,
            image_built_at=built_at,
        )

    def _release(self, node: Node, hold: bool, comment: str) -> None:
        try:
            hold_max = self.hold_max(node.label) if self.hold_max is not None else None
            state = self.nodes.release(node.name, hold, self.hold_seconds, comment, hold_max)
            log.debug("released %s: %s", node.name, state)
        except Exception:
            log.exception("could not release node %s", node.name)

    def _node_failure(
        self, done: Callable[[str, str], CompleteData], label: str, waited: float
    ) -> CompleteData:
        """NODE_FAILURE, saying what the pool had at the end of the wait."""
        data = done(BuildResult.NODE_FAILURE, f"no {label} node within {waited:g}s")
        if self.describe_wait is None:
            return data
        try:
            data.node_wait = self.describe_wait(label, waited)
        except Exception:
            # The report still says NODE_FAILURE; only the why is missing.
            log.exception("build %s: could not describe the pool", data.uuid)
            return data
        data.error = data.node_wait.describe()
        log.warning("build %s: %s", data.uuid, data.error)
        return data

    def _build(
        self,
        params: dict[str, str],
        spec: JobSpec,
        node: Node,
        uuid: str,
        stop: threading.Event,
        log_dir: Path,
        console: _Console,
    ) -> tuple[str, str]:
        """The build on a claimed node; returns (result, error)."""
        console.line(f"gatekeeper build {uuid} job {spec.name}")
        facts = node_facts(node)
        for key, value in facts.items():
            console.line(f"{key}={shown(value)}")
        for key in sorted(params):
            if key != JOB_KEY:
                console.line(f"{key}={params[key]}")
        try:
            transport = self.providers[node.provider].transport(node)
        except KeyError:
            console.line(f"ERROR: unknown provider {node.provider}")
            return BuildResult.ERROR, f"unknown provider {node.provider}"

        (self.state_dir / "workspaces").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{uuid[:7]}-", dir=self.state_dir / "workspaces"))
        try:
            try:
                states = self._prepare(params, spec, tmp / "workspace")
            except MergeConflictError:
                raise
            except WorkspaceError as exc:
                console.line(f"ERROR: preparing the workspace failed: {exc}")
                return BuildResult.ERROR, str(exc)
            write_node_facts(tmp / "workspace", facts)
            for state in states:
                console.line(f"{state.project} {state.branch} {state.head_sha} {state.subject}")
            # The kit travels with the workspace: the node needs nothing of gatekeeper.
            shutil.copytree(DEVSTACK_GATE, tmp / "workspace" / KIT_DIR / DEVSTACK_GATE.name)
            if stop.is_set():
                return BuildResult.ABORTED, "aborted"
            try:
                transport.push(tmp / "workspace", "workspace")
            except TransportError as exc:
                console.line(f"ERROR: copying the workspace to the node failed: {exc}")
                return BuildResult.ERROR, str(exc)
            log.info(
                "workspace synced to node %s (%s): %d projects",
                node.name,
                node.provider,
                len(states),
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

        result, error = self._run(params, spec, node, transport, stop, console)
        if spec.logs:
            try:
                # Paths are kept: a job's logs/screen-n-api.txt is archived at
                # <LOG_PATH>/logs/screen-n-api.txt, as devstack-gate laid them out.
                pulled = transport.pull("workspace", spec.logs, log_dir, self.log_max_bytes)
                notes = pulled.refused
                # Again here, whatever the transport: the other end of a
                # copy may be the job's own user (see archive.vet).
                notes += vet(log_dir, self.log_max_bytes, keep={CONSOLE})
                console.line(f"collected {len(pulled.files)} log files")
                for note in notes:
                    console.line(f"WARNING: log file {note}")
            except (TransportError, OSError) as exc:
                console.line(f"WARNING: collecting logs failed: {shown(exc)}")
        return result, error

    def _prepare(self, params: dict[str, str], spec: JobSpec, dest: Path) -> list[RepoState]:
        """:raises WorkspaceError:"""
        dest.mkdir(parents=True)
        projects = list(spec.projects)
        project = params.get("ZUUL_PROJECT", "")
        if project and project not in projects:
            projects.append(project)
        git_url = self.git_url or params.get("ZUUL_URL", "")
        if projects and not git_url:
            raise WorkspaceError("no git URL to clone from")
        changes = parse_zuul_changes(params.get("ZUUL_CHANGES", ""))
        branch = params.get("ZUUL_BRANCH") or "master"
        # A ref update (a branch moved, a tag pushed) is built at its new revision.
        revisions = {}
        if project and params.get("ZUUL_NEWREV"):
            revisions[project] = params["ZUUL_NEWREV"]
        # A gate build gets the merger's state as a refs/zuul/ ref to fetch.
        zuul_ref = params.get("ZUUL_REF", "")
        merged = None
        if zuul_ref.startswith("refs/zuul/") and params.get("ZUUL_URL"):
            merged = (params["ZUUL_URL"], zuul_ref)
        return self.workspace.prepare(
            dest, git_url, projects, changes, branch, revisions, merged=merged
        )

    def _run(
        self,
        params: dict[str, str],
        spec: JobSpec,
        node: Node,
        transport: Transport,
        stop: threading.Event,
        console: _Console,
    ) -> tuple[str, str]:
        env = {k: v for k, v in params.items() if k != JOB_KEY and isinstance(v, str)}
        env.update(node_facts(node))
        env.update(NODE_PROVIDER=node.provider, NODE_NAME=node.name, WORKSPACE="workspace")
        timeout = spec.timeout if spec.timeout > 0 else self.job_timeout
        # Milliseconds, as Jenkins gave it: devstack-gate's scripts read it so.
        env["BUILD_TIMEOUT"] = str(int(timeout * 1000))
        # The node's root is the transport's business; the command learns the
        # absolute workspace path where it runs (same line: keeps line numbers).
        prefix = 'WORKSPACE="$PWD"; export WORKSPACE; '
        if isinstance(transport, LocalTransport):
            # A directory node carries its image's git cache under its own
            # root (a VM has it at /opt/git, the kit's default).
            prefix += 'GATEKEEPER_GIT_CACHE="${PWD%/*}/opt/git"; export GATEKEEPER_GIT_CACHE; '
        command = prefix + spec.run
        try:
            status = transport.run(command, env, "workspace", console.line, timeout, stop)
        except CommandTimedOut:
            # The transport killed the command's whole process group; the
            # logs are still collected and the node is held, as for a failure.
            console.line(f"TIMED OUT after {timeout:g}s")
            return BuildResult.TIMED_OUT, f"timed out after {timeout:g}s"
        except CommandAborted:
            console.line("ABORTED")
            return BuildResult.ABORTED, "aborted"
        except TransportError as exc:
            console.line(f"ERROR: running the job failed: {exc}")
            return BuildResult.ERROR, str(exc)
        console.line(f"exit status {status}")
        if status == 0:
            return BuildResult.SUCCESS, ""
        if status == TIMED_OUT_STATUS:
            return BuildResult.TIMED_OUT, f"timed out: the job ran out of time (exit {status})"
        return BuildResult.FAILURE, f"exit status {status}"
