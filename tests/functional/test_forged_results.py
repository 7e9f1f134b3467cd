"""A build result counts only when the worker the build was handed to sent it.

Gearman servers (gear's, its geard, gearmand) pass WORK_DATA and WORK_COMPLETE on from
any connection that names a job's handle. These tests forge results through
the real daemon (the sandbox: Gerrit simulator, embedded gear.Server, real
workers) and check that the gate neither votes on nor merges a change on a
forged word, that the refusal is audited, and that the build runs again on
a real worker and comes to its real result.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gear
import pytest
from gear import constants
from sqlalchemy import select

from gatekeeper.app import ALL
from gatekeeper.db.tables import AuditRecord
from gatekeeper.dispatch import certs
from gatekeeper.dispatch.certs import Role, TlsFiles
from gatekeeper.dispatch.protocol import encode
from gatekeeper.dispatch.signing import ResultSigner
from gatekeeper.model.results import CompleteData, StartData
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.gearmand import TlsGearman
from tests.functional.test_gate import UNCONFINED, builds_of, gate_layout

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def flags(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "flags"
    path.mkdir()
    yield path
    (path / "release").touch()  # never leave a build waiting


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("geard", id="geard", marks=pytest.mark.geard),
    ]
)
def servers(request: pytest.FixtureRequest) -> TlsGearman | None:
    """Gear's own server in the daemon, or gear's geard outside it (the
    external TLS server; Debian's gearmand cannot do TLS): both pass a
    job's packets on from whichever connection names its handle, and geard
    lets any certificate of the site's CA register build functions."""
    if request.param == "geard":
        geard: TlsGearman = request.getfixturevalue("geard")
        return geard
    return None


def sandbox(
    tmp_path: Path,
    flags: Path,
    servers: TlsGearman | None,
    components: frozenset[str] = ALL,
) -> Sandbox:
    layout = tmp_path / "layout.yaml"
    layout.write_text(gate_layout(flags))
    if servers is None:
        return Sandbox(
            tmp_path / "sandbox",
            layout,
            components=components,
            extra_site={"providers": [UNCONFINED]},
        )
    return Sandbox(
        tmp_path / "sandbox",
        layout,
        gearman_servers=[servers.address],
        gearman_tls_dir=servers.tls_dir,
        components=components,
        extra_site={"providers": [UNCONFINED]},
    )


def evil_files(box: Sandbox, out: Path) -> TlsFiles:
    """A worker certificate the site's own CA issued, to ``worker:evil``."""
    tls_dir = box.site.gearman.tls_dir
    assert tls_dir is not None
    certs.ensure_local(tls_dir)
    return certs.issue(tls_dir, Role.WORKER, "evil", out=out)


def speaks_tls(host: str, port: int, files: TlsFiles) -> bool:
    """Whether the Gearman port takes a TLS handshake (a site with TLS
    transport), so the forger connects the way a worker of the site would."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.check_hostname = False
    context.load_cert_chain(str(files.cert), str(files.key))
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw):
                return True
    except (OSError, ssl.SSLError):
        return False


def connect(box: Sandbox, gw: gear.BaseClient, files: TlsFiles) -> None:
    assert box.app is not None
    host, port = box.app.gearman_servers[0]
    if speaks_tls(host, port, files):
        gw.addServer(host, port, **files.gear_kwargs())
    else:
        gw.addServer(host, port)
    gw.waitForServer(30)


def push_failing_change(box: Sandbox, flags: Path) -> int:
    number, patchset = box.push_change("openstack/nova", "Breaks the tests", {"b.txt": "x\n"})
    (flags / "failing").write_text(f"{number}\n")
    box.approve(number, patchset)
    return number


def refusals(box: Sandbox) -> list[tuple[str, str, str, str]]:
    """The audit log's refused build packets: (actor, role, build, why)."""
    assert box.app is not None
    with box.app.db.session() as session:
        rows = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == "build-result", AuditRecord.outcome == "refused")
            .order_by(AuditRecord.id)
        )
        return [(r.actor, r.role, r.target, r.detail) for r in rows]


def decided(box: Sandbox, number: int) -> bool:
    """Gatekeeper voted on the change (what happened before results were checked)."""
    assert box.sim is not None
    return "Verified" in box.sim.get_change(number).votes


def test_a_forged_success_does_not_pass_the_gate(
    tmp_path: Path, flags: Path, servers: TlsGearman | None
) -> None:
    """The issue's attack: a plain gear worker takes the gate build of a change
    whose tests fail and answers SUCCESS. The daemon starts without its own
    worker so that the forger is the only one who can take the first build."""
    (flags / "release").touch()
    box = sandbox(tmp_path, flags, servers, components=ALL - {"worker"})
    box.start()
    try:
        assert box.app is not None
        forger = gear.TextWorker("forger")
        connect(box, forger, evil_files(box, tmp_path / "evil"))
        forger.registerFunction("build:integrated")
        taken: list[gear.TextWorkerJob] = []
        grab = threading.Thread(target=lambda: taken.append(forger.getJob()), daemon=True)
        grab.start()
        number = push_failing_change(box, flags)
        grab.join(60)
        assert taken, "the forger was not given the gate build"
        [job] = taken
        uuid = json.loads(job.arguments)["ZUUL_UUID"]
        forged = {"uuid": uuid, "result": "SUCCESS", "url": "http://evil.example/"}
        job.sendWorkComplete(json.dumps(forged))
        box.wait_for(
            lambda: refusals(box) != [] or decided(box, number),
            30,
            "the forged result to be refused",
        )
        forger.shutdown()

        box.app.start_worker()
        box.wait_until_settled()

        assert box.sim is not None
        change = box.sim.get_change(number)
        assert change.status == "NEW"
        assert change.votes["Verified"] == {"gatekeeper": -2}
        assert not any("evil.example" in m.text for m in change.messages)
        [record] = builds_of(box, number)
        assert record.result == "FAILURE" and record.worker == "sandbox-worker"
        assert record.worker_identity.startswith("worker:")
        [(actor, role, target, detail)] = refusals(box)
        assert (actor, role, target) == ("unknown", "", uuid)
        assert detail == "complete: not signed"
        assert box.app.dispatcher is not None and box.app.dispatcher.refused_results == 1
    finally:
        box.stop()


def raw_packet(gw: gear.BaseClient, ptype: int, handle: bytes, text: str) -> None:
    """What a worker sends about a job, sent on a handle it was never given."""
    conn = gw.active_connections[0]
    conn.sendPacket(gear.Packet(constants.REQ, ptype, handle + b"\x00" + text.encode()))


def test_a_worker_with_a_certificate_cannot_answer_a_build_it_was_not_given(
    tmp_path: Path, flags: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``worker:evil`` holds a certificate of the site's CA and signs its
    packets properly, but the build was handed to the sandbox's worker: its
    start and its SUCCESS on the real build's handle are refused, the real
    worker is stopped, and the build runs again and fails, as it should.

    On gear's server only: gearmand (1.1) answers JOB_NOT_FOUND to a packet
    on a handle it did not give that connection, so the scheduler never
    sees it (tried; the scheduler's check is what covers gear's server)."""
    caplog.set_level(logging.INFO, logger="gatekeeper.worker.server")
    box = sandbox(tmp_path, flags, None)
    box.start()
    try:
        assert box.app is not None and box.app.dispatcher is not None
        dispatcher = box.app.dispatcher
        number = push_failing_change(box, flags)

        def running() -> bool:
            records = builds_of(box, number)
            return len(records) == 1 and records[0].worker_identity != ""

        box.wait_for(running, 90, "the gate build to run on the sandbox's worker")
        [record] = builds_of(box, number)
        handle = dispatcher.handle(record.uuid)
        assert handle is not None and handle.startswith(b"H:")

        files = evil_files(box, tmp_path / "evil")
        signer = ResultSigner.from_files(files)
        evil = gear.TextWorker("evil")
        connect(box, evil, files)
        try:
            now = time.time()
            start = StartData(record.uuid, "evil", "evil-node", "local", "http://evil/", now)
            raw_packet(evil, constants.WORK_DATA, handle, encode(signer.sign(start, 1)))
            done = CompleteData(
                record.uuid, "SUCCESS", "http://evil.example/", worker="evil", started_at=now
            )
            raw_packet(evil, constants.WORK_COMPLETE, handle, encode(signer.sign(done, 1)))
            box.wait_for(lambda: len(refusals(box)) == 2, 30, "both packets to be refused")
        finally:
            evil.shutdown()
        (flags / "release").touch()
        box.wait_until_settled()

        assert box.sim is not None
        change = box.sim.get_change(number)
        assert change.status == "NEW"
        assert change.votes["Verified"] == {"gatekeeper": -2}
        assert not any("evil.example" in m.text for m in change.messages)
        [record] = builds_of(box, number)
        assert record.result == "FAILURE" and record.worker == "sandbox-worker"
        assert record.worker_identity.startswith("worker:")
        assert record.worker_identity != "worker:evil"
        details = [(actor, role, target) for actor, role, target, _ in refusals(box)]
        assert details == [("worker:evil", "worker", record.uuid)] * 2
        assert dispatcher.refused_results == 2
        # The run the forged result cut off was stopped (its answer could no
        # longer reach the scheduler: the server forgot the job); only the
        # run after it reported.
        assert f"stop request for build {record.uuid}: aborting" in caplog.text
        mine = [m.text for m in box.sim.get_change(number).messages if m.author == "gatekeeper"]
        assert len([m for m in mine if ": FAILURE" in m]) == 1
        assert not [m for m in mine if ": SUCCESS" in m]
    finally:
        box.stop()


def test_an_insecure_site_believes_results_unsigned_and_says_so(
    tmp_path: Path, flags: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``gearman: {insecure: true}``: no certificates, nothing signed or
    checked (every start and result is believed, as before), and a warning
    at start says so."""
    (flags / "release").touch()
    layout = tmp_path / "layout.yaml"
    layout.write_text(gate_layout(flags))
    insecure = {
        "gearman": {"listen": {"host": "127.0.0.1", "port": 0}, "insecure": True},
        "providers": [UNCONFINED],
    }
    box = Sandbox(tmp_path / "sandbox", layout, extra_site=insecure)
    with caplog.at_level(logging.WARNING, logger="gatekeeper.app"):
        box.start()
    try:
        assert "build results are not authenticated" in caplog.text
        number, patchset = box.push_change("openstack/nova", "Fine", {"f.txt": "x\n"})
        box.approve(number, patchset)
        box.wait_until_settled()
        assert box.sim is not None and box.sim.get_change(number).status == "MERGED"
        [record] = builds_of(box, number)
        assert record.result == "SUCCESS" and record.worker_identity == ""
        assert refusals(box) == []
    finally:
        box.stop()
