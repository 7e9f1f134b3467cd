"""The dispatcher's rules for whose result counts, against a real gear.Server.

A plain ``gear`` worker takes a build and answers it each time it is given
it again; what it sends decides whether the dispatcher believes it. No
scheduler: the dispatcher's events are collected as they come out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gear
import pytest

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.dispatch import certs, protocol
from gatekeeper.dispatch.certs import Role
from gatekeeper.dispatch.client import REFUSED_LIMIT, BuildDispatcher
from gatekeeper.dispatch.signing import ResultSigner, ResultVerifier
from gatekeeper.model.results import BuildCompleted, CompleteData, ResultEvent

pytestmark = pytest.mark.timeout(60)

JOB = "unit"


@pytest.fixture
def server() -> Iterator[int]:
    embedded = gear.Server(0, host="127.0.0.1")
    try:
        yield embedded.port
    finally:
        embedded.shutdown()


@pytest.fixture
def tls(tmp_path: Path) -> Path:
    directory = tmp_path / "tls"
    certs.create_ca(directory)
    return directory


def answer_every_time(port: int, answer: Callable[[str], str], stop: threading.Event) -> None:
    """Take ``build:unit`` whenever offered and answer WORK_COMPLETE ``answer(uuid)``."""
    worker = gear.TextWorker("answerer")
    worker.addServer("127.0.0.1", port)
    worker.waitForServer(10)
    worker.registerFunction(protocol.build_function(JOB))
    try:
        while not stop.is_set():
            try:
                job = worker.getJob()
            except gear.InterruptedError:
                continue
            uuid = json.loads(job.arguments)["ZUUL_UUID"]
            job.sendWorkComplete(answer(uuid))
    finally:
        worker.shutdown()


def run_build(
    port: int, tls: Path, tmp_path: Path, answer: Callable[[str], str]
) -> tuple[CompleteData, int, int]:
    """Submit one build the answerer answers; return its result, the
    dispatcher's count of refusals and the audit log's."""
    db = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    db.migrate()
    events: list[ResultEvent] = []
    dispatcher = BuildDispatcher(
        [("127.0.0.1", port)],
        events.append,
        builds=BuildStore(db),
        startup_grace=0.0,
        verifier=ResultVerifier((tls / certs.CA_CERT).read_bytes()),
    )
    stop = threading.Event()
    answerer = threading.Thread(target=answer_every_time, args=(port, answer, stop), daemon=True)
    answerer.start()
    try:
        dispatcher.wait_for_server(10)
        uuid = "f" * 32
        spec = protocol.JobSpec(name=JOB, run="true", node="")
        dispatcher.submit(uuid, {"ZUUL_UUID": uuid}, spec, attempts=3)
        deadline = time.monotonic() + 45
        while not any(isinstance(e, BuildCompleted) for e in events):
            assert time.monotonic() < deadline, "the build never ended"
            stop.wait(0.05)
        [done] = [e for e in events if isinstance(e, BuildCompleted)]
        return done.data, dispatcher.refused_results, len(BuildStore(db).refusals(uuid))
    finally:
        stop.set()
        dispatcher.shutdown()
        db.dispose()


def signed(tls: Path, tmp_path: Path, result: str) -> Callable[[str], str]:
    """A worker of the site's answer: ``result``, signed for the build it got."""
    signer = ResultSigner.from_files(certs.issue(tls, Role.WORKER, "w1", out=tmp_path / "w1"))

    def answer(uuid: str) -> str:
        data = CompleteData(uuid, result, worker="w1", error="no node")
        return protocol.encode(signer.sign(data, 1))

    return answer


def test_unsigned_success_is_refused_until_the_build_gives_up_as_error(
    server: int, tls: Path, tmp_path: Path
) -> None:
    """Refused results use up no attempt; a build refused again and again
    (say, a worker of another CA) ends ERROR, never SUCCESS, and not never."""
    data, refused, audited = run_build(
        server, tls, tmp_path, lambda uuid: json.dumps({"uuid": uuid, "result": "SUCCESS"})
    )
    assert data.result == "ERROR" and "results refused" in data.error
    assert refused == audited == REFUSED_LIMIT


def test_a_site_worker_cannot_pass_a_build_it_was_not_seen_to_start(
    server: int, tls: Path, tmp_path: Path
) -> None:
    data, refused, audited = run_build(server, tls, tmp_path, signed(tls, tmp_path, "SUCCESS"))
    assert data.result == "ERROR"
    assert refused == audited == REFUSED_LIMIT


def test_a_site_worker_without_a_node_reports_node_failure(
    server: int, tls: Path, tmp_path: Path
) -> None:
    """No node, no start: a result that cannot pass a change is believed from
    any worker of the site (refusing it would run the build for nothing)."""
    answer = signed(tls, tmp_path, "NODE_FAILURE")
    data, refused, audited = run_build(server, tls, tmp_path, answer)
    assert (data.result, refused, audited) == ("NODE_FAILURE", 0, 0)
