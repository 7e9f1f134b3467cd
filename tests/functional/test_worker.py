"""A real worker taking builds from a real embedded Gearman server.

Real parts only: gear.Server and gear.Client over TLS with client
certificates, SQLite, the local provider and its transport (bash, rsync),
real git for the workspace.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gear
import pytest
from sqlalchemy import update

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import Node
from gatekeeper.dispatch.certs import Role, ensure_local
from gatekeeper.dispatch.protocol import (
    JobSpec,
    build_function,
    decode_complete,
    decode_start,
    encode_build,
    stop_function,
)
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.model.node import NodeState
from gatekeeper.pool.providers.local import LocalProvider
from gatekeeper.worker.executor import BuildExecutor
from gatekeeper.worker.server import Worker
from gatekeeper.worker.workspace import WorkspaceBuilder

pytestmark = pytest.mark.timeout(60)

LABEL = "test-label"
PROJECT = "org/project"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "init.defaultBranch=master", *args],
        cwd=cwd,
        env=_GIT_ENV,
        check=True,
        capture_output=True,
    )


def make_upstream(root: Path) -> None:
    """A bare ``org/project`` with one commit on master and change 1,1 on top."""
    bare = root / PROJECT
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "--bare")
    work = root.parent / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "README").write_text("hello\n")
    git(work, "add", "README")
    git(work, "commit", "-q", "-m", "Initial commit")
    git(work, "push", "-q", str(bare), "HEAD:refs/heads/master")
    (work / "fix.txt").write_text("fixed\n")
    git(work, "add", "fix.txt")
    git(work, "commit", "-q", "-m", "Fix the thing")
    git(work, "push", "-q", str(bare), "HEAD:refs/changes/01/1/1")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@dataclass
class Harness:
    tmp: Path
    server: EmbeddedGearman
    client: gear.Client
    worker: Worker
    nodes: NodeStore
    provider: LocalProvider
    log_root: Path
    console: list[str]

    def add_ready_node(self, name: str) -> None:
        self.nodes.add(name, LABEL, "local")
        self.nodes.set_ready(name, self.provider.launch(name, LABEL))

    def submit(self, command: str, uuid: str, timeout: float = 30.0) -> gear.TextJob:
        params = {
            "ZUUL_UUID": uuid,
            "ZUUL_PROJECT": PROJECT,
            "ZUUL_BRANCH": "master",
            "ZUUL_PIPELINE": "check",
            "ZUUL_CHANGES": f"{PROJECT}:master:refs/changes/01/1/1",
            "ZUUL_CHANGE": "1",
            "ZUUL_PATCHSET": "1",
            "LOG_PATH": f"01/1/1/check/test-job/{uuid[:7]}",
        }
        spec = JobSpec(
            name="test-job",
            run=command,
            node=LABEL,
            logs=["logs/**"],
            timeout=timeout,
            projects=[PROJECT],
        )
        job = gear.TextJob(build_function("test-job"), encode_build(params, spec))
        self.client.submitJob(job)
        return job

    def log_dir(self, uuid: str) -> Path:
        return self.log_root / f"01/1/1/check/test-job/{uuid[:7]}"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    make_upstream(tmp_path / "upstream")
    db = Database(f"sqlite:///{tmp_path / 'gatekeeper.db'}")
    db.migrate()
    nodes = NodeStore(db)
    provider = LocalProvider(ProviderConfig(name="local", driver="local", root=tmp_path / "nodes"))
    console: list[str] = []
    executor = BuildExecutor(
        nodes=nodes,
        providers={"local": provider},
        workspace=WorkspaceBuilder(tmp_path / "cache", {}),
        git_url=str(tmp_path / "upstream"),
        log_root=tmp_path / "logs",
        log_url_base="http://logs.example.org/",
        state_dir=tmp_path / "state",
        node_wait=10.0,
        hold_seconds=3600.0,
        console=console.append,
    )
    # Over TLS, as a site runs: the server, a worker and a scheduler each with
    # its role's certificate.
    tls = ensure_local(tmp_path / "tls", "w1")
    server = EmbeddedGearman("127.0.0.1", 0, tls=tls[Role.SERVER])
    worker = Worker(
        "w1",
        [("127.0.0.1", server.port)],
        ["test-job"],
        executor,
        concurrency=2,
        tls=tls[Role.WORKER],
    )
    client = gear.Client("test")
    try:
        worker.start()
        worker.wait_for_server(10)
        client.addServer("127.0.0.1", server.port, **gear_kwargs(tls[Role.SCHEDULER]))
        client.waitForServer(10)
        yield Harness(tmp_path, server, client, worker, nodes, provider, tmp_path / "logs", console)
    finally:
        worker.stop()
        client.shutdown()
        server.stop()
        db.dispose()


def test_successful_build_reports_start_and_archives_logs(harness: Harness) -> None:
    harness.add_ready_node("node-1")
    uuid = "a1b2c3d4e5f6"
    job = harness.submit(
        "echo hello; ls ..; mkdir -p logs; echo log > logs/screen-n-api.txt; exit 0", uuid
    )
    wait_for(lambda: job.complete)
    assert not job.failure, job.exception
    start = decode_start(job.data[0])
    result = decode_complete(job.data[-1])
    assert (start.uuid, start.worker, start.node, start.provider) == (uuid, "w1", "node-1", "local")
    assert start.url == f"http://logs.example.org/01/1/1/check/test-job/{uuid[:7]}/"
    assert result.result == "SUCCESS", result.error
    assert (result.node, result.provider, result.url) == ("node-1", "local", start.url)
    assert result.started_at is not None and result.ended_at is not None
    assert result.ended_at >= result.started_at

    console = (harness.log_dir(uuid) / "console.txt").read_text()
    assert console.startswith(f"gatekeeper build {uuid} job test-job\n")
    assert "NODE_PROVIDER=local\nNODE_NAME=node-1\n" in console
    assert f"ZUUL_UUID={uuid}\n" in console
    assert f"{PROJECT} master " in console and " Fix the thing\n" in console
    assert "\nhello\n" in console
    assert "\nworkspace\n" in console  # `ls ..` from inside the workspace
    assert harness.console[:1] == [f"gatekeeper build {uuid} job test-job"]
    archived = harness.log_dir(uuid) / "logs" / "screen-n-api.txt"
    assert archived.read_text() == "log\n"
    assert (harness.log_dir(uuid) / "index.html").exists()
    node = harness.nodes.get("node-1")
    assert node is not None and node.state == NodeState.DELETE
    assert harness.worker.running_builds == []


def test_the_job_sees_where_it_runs_and_the_node_facts_reach_its_logs(
    harness: Harness,
) -> None:
    # The pool records a cloud node's region and zone (test_pool_cloud); a
    # local node has none, so this row is given them as a cloud would. The
    # zone is the cloud's text: quotes and a dollar must arrive as they are.
    harness.nodes.add("node-3", LABEL, "local")
    launched = harness.provider.launch("node-3", LABEL)
    launched.region, launched.availability_zone = "RegionOne", "az 'one' $HOME"
    harness.nodes.set_ready("node-3", launched)
    uuid = "facade0facts"
    job = harness.submit(
        'echo "job: $NODE_PROVIDER|$NODE_REGION|$NODE_AZ|$NODE_LABEL|$NODE_NAME"\n'
        'echo "cache: $GATEKEEPER_GIT_CACHE root: $(cd .. && pwd)"\n'
        # What the devstack kit's wrap does with the file: keep it in logs/.
        "mkdir -p logs && cp .gatekeeper/node.env logs/node.env\n"
        "env -i bash -c 'source logs/node.env && echo \"file: $NODE_AZ|$NODE_REGION\"'\n",
        uuid,
    )
    wait_for(lambda: job.complete)
    result = decode_complete(job.data[-1])
    assert result.result == "SUCCESS", result.error

    console = (harness.log_dir(uuid) / "console.txt").read_text()
    assert "\njob: local|RegionOne|az 'one' $HOME|test-label|node-3\n" in console
    assert "\nfile: az 'one' $HOME|RegionOne\n" in console
    # The worker's own record of it, before the job ran.
    assert "NODE_LABEL=test-label\nNODE_REGION=RegionOne\nNODE_AZ=az 'one' $HOME\n" in console
    # The image's git cache sits beside the workspace on a directory node.
    (cache_line,) = [line for line in console.splitlines() if line.startswith("cache: ")]
    cache, root = cache_line.removeprefix("cache: ").split(" root: ")
    assert cache == f"{root}/opt/git"
    archived = (harness.log_dir(uuid) / "logs" / "node.env").read_text().splitlines()
    assert archived[1:] == [
        "NODE_PROVIDER=local",
        "NODE_NAME=node-3",
        "NODE_LABEL=test-label",
        "NODE_REGION=RegionOne",
        "NODE_AZ='az '\"'\"'one'\"'\"' $HOME'",
    ]


def test_failing_build_holds_the_node(harness: Harness) -> None:
    harness.add_ready_node("node-2")
    uuid = "f00dfeedbeef"
    job = harness.submit("echo about to fail; test -f org/project/fix.txt && exit 3", uuid)
    wait_for(lambda: job.complete)
    result = decode_complete(job.data[-1])
    assert result.result == "FAILURE"
    assert "exit status 3" in (harness.log_dir(uuid) / "console.txt").read_text()
    node = harness.nodes.get("node-2")
    assert node is not None and node.state == NodeState.HOLD
    assert node.hold_until is not None and node.hold_until > time.time()


def test_stop_aborts_a_running_build(harness: Harness) -> None:
    harness.add_ready_node("node-3")
    uuid = "0123456789ab"
    job = harness.submit("echo started; sleep 60", uuid)
    wait_for(lambda: len(job.data) >= 1 and "started" in harness.console)
    stop = gear.TextJob(stop_function("w1"), json.dumps({"uuid": uuid}))
    harness.client.submitJob(stop)
    wait_for(lambda: stop.complete and job.complete)
    assert json.loads(stop.data[-1]) == {"uuid": uuid, "stopped": True}
    result = decode_complete(job.data[-1])
    assert result.result == "ABORTED"
    # An aborted build is no verdict on its node: nothing is held.
    node = harness.nodes.get("node-3")
    assert node is not None and node.state == NodeState.DELETE


def test_a_stop_naming_another_run_of_the_build_aborts_nothing(harness: Harness) -> None:
    """A stop meant for a refused earlier run of a build names that run's
    Gearman handle; the build submitted again, with the same uuid, and handed
    to the same worker, must keep running (it was aborted so in CI)."""
    harness.add_ready_node("node-5")
    uuid = "5a5a5a5a5a5a"
    job = harness.submit("echo started; sleep 60", uuid)
    wait_for(lambda: len(job.data) >= 1 and "started" in harness.console)
    stale = gear.TextJob(stop_function("w1"), json.dumps({"uuid": uuid, "handle": "H:gone:1"}))
    harness.client.submitJob(stale)
    wait_for(lambda: stale.complete)
    assert json.loads(stale.data[-1]) == {"uuid": uuid, "stopped": False}
    assert not job.complete
    current = gear.TextJob(
        stop_function("w1"), json.dumps({"uuid": uuid, "handle": job.handle.decode()})
    )
    harness.client.submitJob(current)
    wait_for(lambda: current.complete and job.complete)
    assert json.loads(current.data[-1]) == {"uuid": uuid, "stopped": True}
    assert decode_complete(job.data[-1]).result == "ABORTED"


def test_timeout(harness: Harness) -> None:
    harness.add_ready_node("node-4")
    job = harness.submit("sleep 60", "7777777777aa", timeout=0.5)
    wait_for(lambda: job.complete)
    assert decode_complete(job.data[-1]).result == "TIMED_OUT"


def test_a_job_out_of_time_on_its_own_watch_is_timed_out(harness: Harness) -> None:
    """The devstack kit kills its gate hook before the build's timeout (which
    it gets as BUILD_TIMEOUT, in milliseconds as Jenkins gave it), collects
    the logs and exits 124, GNU timeout's status: that is TIMED_OUT."""
    harness.add_ready_node("node-6")
    uuid = "124124124124"
    wrap = ".gatekeeper/kit/devstack-gate/devstack-vm-gate-wrap.sh"
    job = harness.submit(f'echo "budget $BUILD_TIMEOUT ms"; test -f {wrap} && exit 124', uuid, 30)
    wait_for(lambda: job.complete)
    assert decode_complete(job.data[-1]).result == "TIMED_OUT"
    assert "\nbudget 30000 ms\n" in (harness.log_dir(uuid) / "console.txt").read_text()


def test_no_node_is_node_failure_and_request_withdrawn(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness.worker.executor, "node_wait", 0.3)
    job = harness.submit("true", "9999999999cc")
    wait_for(lambda: job.complete)
    assert decode_complete(job.data[-1]).result == "NODE_FAILURE"
    assert job.data[:-1] == []  # no WORK_DATA: the build never started
    assert harness.nodes.pending_requests() == {}


def test_malformed_build_is_a_work_exception(harness: Harness) -> None:
    job = gear.TextJob(build_function("test-job"), "not json")
    harness.client.submitJob(job)
    wait_for(lambda: job.complete)
    assert job.failure
    assert "malformed build arguments" in job.exception


def test_unsafe_log_path_is_an_error_without_claiming(harness: Harness) -> None:
    harness.add_ready_node("node-5")
    params = {"ZUUL_UUID": "bad0000000", "LOG_PATH": "../../etc"}
    spec = JobSpec(name="test-job", run="true", node=LABEL)
    job = gear.TextJob(build_function("test-job"), encode_build(params, spec))
    harness.client.submitJob(job)
    wait_for(lambda: job.complete)
    assert decode_complete(job.data[-1]).result == "ERROR"
    node = harness.nodes.get("node-5")
    assert node is not None and node.state == NodeState.READY


def test_merge_conflict_is_error_and_node_held(harness: Harness) -> None:
    """A change ref that does not exist upstream cannot be fetched: ERROR."""
    harness.add_ready_node("node-6")
    params = {
        "ZUUL_UUID": "cafe00000000",
        "ZUUL_PROJECT": PROJECT,
        "ZUUL_CHANGES": f"{PROJECT}:master:refs/changes/02/2/1",
        "LOG_PATH": "02/2/1/check/test-job/cafe000",
    }
    spec = JobSpec(name="test-job", run="true", node=LABEL, projects=[PROJECT])
    job = gear.TextJob(build_function("test-job"), encode_build(params, spec))
    harness.client.submitJob(job)
    wait_for(lambda: job.complete)
    result = decode_complete(job.data[-1])
    assert result.result == "ERROR"
    assert "2,1" in result.error
    console = (harness.log_root / "02/2/1/check/test-job/cafe000/console.txt").read_text()
    assert "preparing the workspace failed" in console


def test_the_start_says_where_the_node_runs_and_how_old_its_image_is(harness: Harness) -> None:
    # The local provider reports no region: the row is set as a cloud's launch sets it.
    images = ImageStore(harness.nodes.db)
    image = images.start_build("local", LABEL, now=time.time() - 7200)
    images.finish(image.name, "img-1")
    harness.add_ready_node("node-1")
    with harness.nodes.db.session() as session:
        session.execute(
            update(Node)
            .where(Node.name == "node-1")
            .values(region="RegionOne", availability_zone="nova-az2", image=image.name)
        )
    job = harness.submit("exit 0", "d1e2f3a4b5c6")
    wait_for(lambda: job.complete)
    start = decode_start(job.data[0])
    assert (start.region, start.availability_zone, start.label) == ("RegionOne", "nova-az2", LABEL)
    assert (start.image, start.image_built_at) == (image.name, image.created_at)
