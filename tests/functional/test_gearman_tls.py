"""Gearman over TLS with client certificates: who may connect, and what each role may do.

Real parts only: the whole daemon (the sandbox: embedded gear.Server with
TLS and its role ACL, scheduler, one worker) against the Gerrit simulator,
plain gear workers and clients as the attackers, Debian's gearmand.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gear
import pytest

from gatekeeper.dispatch import admin
from gatekeeper.dispatch.certs import Role, TlsFiles, ensure_local
from gatekeeper.dispatch.protocol import encode
from gatekeeper.dispatch.tls import check_external, gear_kwargs
from gatekeeper.errors import CertificateError
from gatekeeper.model.results import CompleteData, StartData
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.gearmand import GEARMAND, _wait_for_port, free_port, issued
from tests.functional.test_gate import (
    UNCONFINED,
    builds_of,
    gate_layout,
    push_and_approve,
    wait_all_started,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags"
    path.mkdir()
    return path


@pytest.fixture
def box(tmp_path: Path, flags: Path) -> Iterator[Sandbox]:
    """The sandbox with one build slot, so a second build has only an attacker to go to."""
    layout = tmp_path / "layout.yaml"
    layout.write_text(gate_layout(flags))
    # Unconfined: the gate jobs wait on flag files outside their node.
    sandbox = Sandbox(
        tmp_path / "sandbox", layout, worker_count=1, extra_site={"providers": [UNCONFINED]}
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        (flags / "release").touch()  # never leave a build waiting
        sandbox.stop()


def _server(box: Sandbox) -> Any:
    """The embedded gear.Server (its connections and jobs are gear's own attributes)."""
    assert box.app is not None and box.app.gearman is not None
    return box.app.gearman._server


def _address(box: Sandbox) -> tuple[str, int]:
    assert box.app is not None
    return box.app.gearman_servers[0]


def _tls_dir(box: Sandbox) -> Path:
    assert box.app is not None and box.app.site.gearman.tls_dir is not None
    return box.app.site.gearman.tls_dir


def _registered(box: Sandbox, subject: str) -> set[str]:
    """What the server took from CAN_DO on the connections of ``subject``."""
    return {
        name.decode()
        for conn in list(_server(box).active_connections)
        if conn.ssl_subject == subject
        for name in conn.functions
    }


class Forger:
    """A plain gear worker that takes ``build:<job>`` and answers SUCCESS with
    its own URL: the attack of a process that merely reaches the port."""

    url = "http://evil.example/"

    def __init__(self, host: str, port: int, job: str, tls: TlsFiles | None = None) -> None:
        self.worker = gear.TextWorker("forger")
        self.worker.addServer(host, port, **gear_kwargs(tls))
        self.worker.registerFunction(f"build:{job}")
        self.taken: list[str] = []
        self.got_one = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                job = self.worker.getJob()
            except (gear.InterruptedError, OSError):
                return  # stopped, or (with TLS) the server hung up on it
            self.taken.append(job.name)
            self.got_one.set()
            # What a real worker sends, well formed, with a result of its choosing.
            uuid = json.loads(job.arguments)["ZUUL_UUID"]
            now = time.time()
            job.sendWorkData(encode(StartData(uuid, "forger", "n", "local", self.url, now)))
            job.sendWorkComplete(
                encode(CompleteData(uuid, "SUCCESS", self.url, worker="forger", ended_at=now))
            )

    def stop(self) -> None:
        # Not stopWaitingForJobs: on a connection the server keeps hanging up
        # on, gear's can wait for minutes. The thread is a daemon.
        _close(self.worker)


def _plain_status(host: str, port: int) -> str:
    """gear's admin "status" over plain TCP: name, total, running, workers per function."""
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"status\n")
        answer = b""
        while not answer.endswith(b".\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode()


def _sync(client: gear.BaseClient) -> None:
    """Wait until the server has read every packet sent before: it answers
    an admin request on a connection after what came before it there (gear's
    server does not answer ECHO_REQ)."""
    for conn in client.active_connections:
        conn.sendAdminRequest(gear.StatusAdminRequest(), timeout=30)


def _close(client: gear.BaseClient) -> None:
    """Shut a gear client down, closing the sockets of connections that never
    got through (gear's shutdown drops them without closing them)."""
    connections = [*client.active_connections, *client.inactive_connections]
    client.shutdown()
    for conn in connections:
        conn.disconnect()


def test_a_process_without_a_certificate_cannot_take_a_build(box: Sandbox, flags: Path) -> None:
    """Issue 13, attack 1: a plain gear worker registers build:integrated and
    answers SUCCESS for a change whose tests fail. The only real build slot is
    busy, so before TLS the forger got the build and the change merged."""
    solo = push_and_approve(box, "openstack/keystone", "Change A")
    wait_all_started(box, 1)  # the one real slot now waits for the release flag
    host, port = _address(box)
    forger = Forger(host, port, "integrated")
    try:
        number, patchset = box.push_change("openstack/nova", "Broken", {"b.txt": "x\n"})
        (flags / "failing").write_text(f"{number}\n")
        box.approve(number, patchset)
        # The build is in Gearman: taken by the forger, or queued for a worker.
        box.wait_for(
            lambda: forger.got_one.is_set() or len(_server(box).jobs) == 2,
            60,
            "the second build to reach Gearman",
        )
        (flags / "release").touch()
        box.wait_until_settled()
    finally:
        forger.stop()
    assert forger.taken == []
    [record] = builds_of(box, number)
    assert (record.result, record.worker) == ("FAILURE", "sandbox-worker")
    assert "evil.example" not in record.log_url
    assert box.sim is not None
    assert box.sim.get_change(number).status != "MERGED"
    assert box.sim.get_change(solo).status == "MERGED"


def _handshake(host: str, port: int, ca: Path, tls: TlsFiles | None) -> None:
    """A TLS handshake as a gear client makes it (the server's certificate checked)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.check_hostname = False
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # what gear's server speaks
    if tls is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw) as conn:
            # The server's verdict on our certificate arrives with its first
            # answer in TLS 1.2's last flight; a status request brings it.
            conn.sendall(b"status\n")
            if not conn.recv(1):
                raise ConnectionError("closed without an answer")


def test_no_certificate_and_another_cas_certificate_are_refused(
    box: Sandbox, tmp_path: Path
) -> None:
    host, port = _address(box)
    site_ca = _tls_dir(box) / "ca.pem"
    stranger = ensure_local(tmp_path / "other-ca", "sandbox-worker")[Role.WORKER]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(host, port, site_ca, None)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(host, port, site_ca, stranger)
    # A member of the site still gets in (and so the server outlived the refusals).
    _handshake(host, port, site_ca, issued(_tls_dir(box), Role.OPERATOR, "alice"))


def test_a_silent_connection_does_not_stop_others_connecting(box: Sandbox) -> None:
    """gear's server does the TLS handshake in its one accept thread: a peer
    that connects and says nothing must not keep everyone else out."""
    host, port = _address(box)
    with socket.create_connection((host, port)):
        operator = issued(_tls_dir(box), Role.OPERATOR, "alice")
        assert box.app is not None
        # The scheduler answers: this connection got through the accept thread.
        answer = admin.call([(host, port)], "status", {}, timeout=60, tls=operator)
    assert isinstance(answer, dict)


def test_a_worker_certificate_cannot_answer_operators_nor_submit_builds(box: Sandbox) -> None:
    host, port = _address(box)
    rogue_tls = issued(_tls_dir(box), Role.WORKER, "rogue")
    rogue = gear.TextWorker("rogue")
    rogue.addServer(host, port, **gear_kwargs(rogue_tls))
    client = gear.Client("rogue-client")
    client.addServer(host, port, **gear_kwargs(rogue_tls))
    try:
        rogue.waitForServer(30)
        for function in ("gatekeeper:enqueue", "gatekeeper:status", "stop:sandbox-worker"):
            rogue.registerFunction(function)
        _sync(rogue)  # the server has read every CAN_DO sent before
        assert _registered(box, "worker:rogue") == set()
        rogue.registerFunction("build:integrated")
        rogue.registerFunction("stop:rogue")
        _sync(rogue)
        assert _registered(box, "worker:rogue") == {"build:integrated", "stop:rogue"}

        client.waitForServer(30)
        for function, arguments in (("build:integrated", "{}"), ("gatekeeper:status", "{}")):
            with pytest.raises(gear.GearmanError):
                client.submitJob(gear.TextJob(function, arguments), timeout=30)
        assert list(_server(box).jobs) == []
    finally:
        _close(client)
        _close(rogue)


def test_an_operator_certificate_cannot_register_builds(box: Sandbox) -> None:
    host, port = _address(box)
    operator = issued(_tls_dir(box), Role.OPERATOR, "alice")
    rogue = gear.TextWorker("operator-as-worker")
    rogue.addServer(host, port, **gear_kwargs(operator))
    try:
        rogue.waitForServer(30)
        for function in ("build:integrated", "stop:sandbox-worker", "gatekeeper:status"):
            rogue.registerFunction(function)
        _sync(rogue)
        assert _registered(box, "operator:alice") == set()
    finally:
        _close(rogue)
    # What an operator is for still works.
    answer = admin.call([(host, port)], "status", {}, timeout=60, tls=operator)
    assert isinstance(answer, dict)


@pytest.mark.gearmand
def test_debians_gearmand_ignores_ssl_and_gatekeeper_refuses_it(tmp_path: Path) -> None:
    """gearmand 1.1.20 accepts --ssl and serves plain Gearman on the port.
    If this test fails because the handshake works, Debian's gearmand has
    become a TLS server: update README and tests/fixtures/gearmand.py."""
    if not Path(GEARMAND).exists():
        pytest.skip("needs Debian's gearmand (apt-get install gearman-job-server)")
    tls = ensure_local(tmp_path / "tls", "sandbox-worker")
    server = tls[Role.SERVER]
    port = free_port()
    proc = subprocess.Popen(
        [
            GEARMAND,
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--log-file={tmp_path / 'gearmand.log'}",
            "--ssl",
            f"--ssl-ca-file={server.ca}",
            f"--ssl-certificate={server.cert}",
            f"--ssl-key={server.key}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    plain = gear.TextWorker("no-certificate")
    try:
        _wait_for_port(port, proc)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake("127.0.0.1", port, server.ca, tls[Role.WORKER])
        # ... while a worker without any certificate registers a build function.
        plain.addServer("127.0.0.1", port)
        plain.waitForServer(30)
        plain.registerFunction("build:integrated")
        deadline = threading.Event()
        for _ in range(300):
            if "build:integrated\t0\t0\t1" in _plain_status("127.0.0.1", port):
                break
            deadline.wait(0.1)
        else:
            raise AssertionError("gearmand never showed the plain worker's build:integrated")
        with pytest.raises(CertificateError, match="plain TCP"):
            check_external("127.0.0.1", port, tls[Role.SCHEDULER])
    finally:
        _close(plain)
        proc.terminate()
        proc.wait(10)


def test_an_insecure_site_says_so_and_is_open(
    tmp_path: Path, flags: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = tmp_path / "layout.yaml"
    layout.write_text(gate_layout(flags))
    insecure = {
        "gearman": {"listen": {"host": "127.0.0.1", "port": 0}, "insecure": True},
        "providers": [UNCONFINED],
    }
    sandbox = Sandbox(tmp_path / "sandbox", layout, worker_count=1, extra_site=insecure)
    sandbox.start()
    try:
        assert any(
            r.levelname == "WARNING" and "anyone who reaches" in r.getMessage()
            for r in caplog.records
        )
        host, port = _address(sandbox)
        plain = gear.TextWorker("no-certificate")
        plain.addServer(host, port)
        try:
            plain.waitForServer(30)  # plain TCP: no certificate asked for
        finally:
            _close(plain)
    finally:
        sandbox.stop()
