"""Operators through the daemon: a request without a valid token changes
nothing, every request is in the audit log, and a request's text cannot
forge or bloat a log line.

Requests go over the daemon's real (embedded) Gearman server, either as the
``gatekeeper`` command sends them (:func:`admin.call`) or as a bare Gearman
client would (:func:`send_raw`), which is what an attacker on the port has.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gear
import jwt
import pytest
from sqlalchemy import select

from gatekeeper.db.tables import AuditRecord, BuildRecord
from gatekeeper.dispatch import admin
from gatekeeper.dispatch.certs import TlsFiles
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.errors import GatekeeperError
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.pipelines import GATE_PIPELINE

pytestmark = pytest.mark.timeout(120)

LAYOUT = (
    """
pipelines:
"""
    + GATE_PIPELINE
    + """jobs:
  - name: quick
    node: devstack-vm
    run: "true"
projects:
  - name: openstack/nova
    gate: [quick]
"""
)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def servers(box: Sandbox) -> list[tuple[str, int]]:
    assert box.app is not None
    return box.app.gearman_servers


def queued(box: Sandbox) -> list[str]:
    """The changes in the gate, as the scheduler holds them."""
    assert box.app is not None and box.app.scheduler is not None
    return [str(i.change) for m in box.app.scheduler.managers for i in m.items]


def audit_rows(box: Sandbox) -> list[AuditRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def build_rows(box: Sandbox) -> list[BuildRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        return list(session.scalars(select(BuildRecord)))


def send_raw(box: Sandbox, function: str, body: bytes) -> dict[str, object]:
    """Submit ``body`` as it is, as any Gearman client on the port can; the answer."""
    client = gear.Client(client_id="not-the-cli")
    try:
        for host, port in servers(box):
            # As any member of the site can: TLS needs a certificate of its CA.
            client.addServer(host, port, **gear_kwargs(box.operator_tls()))
        client.waitForServer(10)
        job = gear.Job(function.encode(), body)
        client.submitJob(job, timeout=30)
        box.wait_for(lambda: job.complete, 30, f"an answer to {function}")
        answer = json.loads(job.data[-1])
    finally:
        client.shutdown()
    assert isinstance(answer, dict)
    return answer


def unapproved_change(box: Sandbox) -> str:
    number, ps = box.push_change("openstack/nova", "Not approved", {"n.txt": "n\n"})
    box.wait_until_settled()
    return f"{number},{ps}"


def foreign_token(secret: bytes) -> str:
    """A token that another system signed with the same secret: right
    signature, but not issued by gatekeeper for its operators."""
    now = int(time.time())
    claims = {"sub": "bob", "role": "admin", "iat": now, "exp": now + 600, "iss": "zuul"}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "kind",
    ["none", "expired", "other-secret", "other-issuer", "garbage"],
)
def test_an_enqueue_without_a_valid_token_is_refused_and_changes_nothing(
    box: Sandbox, kind: str
) -> None:
    change = unapproved_change(box)
    assert box.site.admin.secret_file is not None
    secret = box.site.admin.secret_file.read_bytes()
    tokens = {
        "none": None,
        "expired": admin_token(secret, lifetime=60, age=3600),
        "other-secret": admin_token(b"x" * 32),
        "other-issuer": foreign_token(secret),
        "garbage": "not.a.token",
    }
    args = {"pipeline": "gate", "project": "openstack/nova", "change": change}
    with pytest.raises(GatekeeperError, match="token"):
        admin.call(
            servers(box), "enqueue", args, timeout=30, token=tokens[kind], tls=box.operator_tls()
        )
    box.wait_until_settled()
    assert queued(box) == [] and build_rows(box) == []
    [row] = audit_rows(box)
    assert (row.action, row.outcome, row.role) == ("enqueue", "refused", "")
    # Nothing a refused token claims is believed: not "bob".
    assert row.actor == ("anonymous" if kind == "none" else "unverified token")
    assert change in row.target and "token" in row.detail


def admin_token(secret: bytes, lifetime: float = 600, age: float = 0) -> str:
    from gatekeeper.dispatch.tokens import mint

    return mint(secret, "bob", "admin", lifetime, now=time.time() - age)


def test_a_valid_token_works_and_is_audited_with_its_user(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    change = unapproved_change(box)
    carol = box.operator_token("carol", role="operator")
    args = {"pipeline": "gate", "project": "openstack/nova", "change": change}
    answer = admin.call(
        servers(box), "enqueue", args, timeout=30, token=carol, tls=box.operator_tls()
    )
    assert answer == f"enqueued openstack/nova {change} in gate"
    box.wait_until_settled()
    # It was tested (Gerrit then refuses to submit it: nobody approved it).
    assert [(r.change, r.result) for r in build_rows(box)] == [
        (int(change.split(",")[0]), "SUCCESS")
    ]
    # Gerrit's refusal is two lines of its stderr; in the log it is one.
    [refusal] = [r.getMessage() for r in caplog.records if "merge failure" in r.getMessage()]
    assert "needs Code-Review" in refusal and "\n" not in refusal

    # The audit log is for admins: carol (operator) is refused, bob (admin) reads it.
    with pytest.raises(GatekeeperError, match="needs the admin role"):
        admin.call(
            servers(box), "audit", {"limit": 10}, timeout=30, token=carol, tls=box.operator_tls()
        )
    entries = admin.call(
        servers(box),
        "audit",
        {"limit": 10},
        timeout=30,
        token=box.operator_token("bob"),
        tls=box.operator_tls(),
    )
    assert isinstance(entries, list)
    # Newest first: bob's own request is not in its answer (written after it).
    assert [(e["actor"], e["role"], e["action"], e["outcome"]) for e in entries] == [
        ("carol", "operator", "audit", "refused"),
        ("carol", "operator", "enqueue", "ok"),
    ]
    assert change in entries[1]["target"]
    # status needs no token, and is audited as anonymous.
    status = admin.call(servers(box), "status", {}, timeout=30, tls=box.operator_tls())
    assert isinstance(status, dict) and "pipelines" in status
    assert [(r.actor, r.action, r.outcome) for r in audit_rows(box)][-2:] == [
        ("bob", "audit", "ok"),
        ("anonymous", "status", "ok"),
    ]


def test_request_text_cannot_forge_or_bloat_a_log_line(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.dispatch.admin")
    # JSON escapes a newline inside a string; a raw one can only come outside
    # of them, in a request that is then not JSON, and is logged as refused.
    forged = b'{"pipeline": "gate"}\n2026-12-06 12:00:00,000 INFO gatekeeper: dequeued all'
    answer = send_raw(box, "gatekeeper:enqueue", forged)
    assert answer["ok"] is False and "not JSON" in str(answer["error"])
    token = box.operator_token("mallory", role="operator")
    huge = {"pipeline": "gate", "project": "p" * 3_000_000, "change": "1,1", "token": token}
    answer = send_raw(box, "gatekeeper:enqueue", json.dumps(huge).encode())
    assert answer == {
        "ok": False,
        "error": f"the request is {len(json.dumps(huge))} bytes; at most 65536 are accepted",
    }

    lines = [r.getMessage() for r in caplog.records if r.name == "gatekeeper.dispatch.admin"]
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line and len(line) < 2000
    assert '{"pipeline": "gate"}\\n2026-12-06' in lines[0]
    # Refused before it was read: not even the token in it was looked at.
    assert "mallory" not in lines[1] and "anonymous" in lines[1]
    rows = audit_rows(box)
    assert [(r.actor, r.outcome) for r in rows] == [("anonymous", "refused")] * 2
    assert max(len(r.target) for r in rows) <= 2000


def test_a_request_the_scheduler_got_to_too_late_is_not_acted_on(box: Sandbox) -> None:
    """The scheduler is busy for longer than the operator waits: the enqueue
    fails for the operator, so it must not happen once the scheduler is free,
    nor stay queued in Gearman."""
    assert box.app is not None and box.app.scheduler is not None
    change = unapproved_change(box)
    release = threading.Event()
    box.app.scheduler.put_management(lambda: release.wait(30))
    args = {"pipeline": "gate", "project": "openstack/nova", "change": change}
    try:
        with pytest.raises(GatekeeperError, match="did not answer within 2s"):
            admin.call(
                servers(box),
                "enqueue",
                args,
                timeout=2,
                token=box.operator_token(),
                tls=box.operator_tls(),
            )
    finally:
        release.set()
    box.wait_until_settled()
    assert queued(box) == [] and build_rows(box) == []
    [row] = audit_rows(box)
    assert (row.outcome, row.detail) == ("error", "the scheduler did not answer within 2s")
    assert gearman_queued(servers(box), box.operator_tls()).get("gatekeeper:enqueue", 0) == 0


def gearman_queued(where: list[tuple[str, int]], tls: TlsFiles | None = None) -> dict[str, int]:
    """Jobs queued or running per function, by the servers' own ``status``."""
    client = gear.Client(client_id="status")
    try:
        for host, port in where:
            client.addServer(host, port, **gear_kwargs(tls))
        client.waitForServer(10)
        counts: dict[str, int] = {}
        for conn in client.active_connections:
            request = gear.StatusAdminRequest()
            conn.sendAdminRequest(request, timeout=10)
            for line in (request.response or b"").decode().splitlines():
                fields = line.split("\t")
                if len(fields) == 4:
                    counts[fields[0]] = counts.get(fields[0], 0) + int(fields[1])
        return counts
    finally:
        client.shutdown()


@pytest.fixture(params=["embedded", pytest.param("gearmand", marks=pytest.mark.gearmand)])
def bare_gearman(request: pytest.FixtureRequest) -> Iterator[list[tuple[str, int]]]:
    """A Gearman server no scheduler is connected to: gear's, or Debian's gearmand."""
    if request.param == "gearmand":
        yield [request.getfixturevalue("gearmand")]
        return
    server = gear.Server(0, host="127.0.0.1")
    try:
        yield [("127.0.0.1", server.port)]
    finally:
        server.shutdown()


def test_a_request_no_scheduler_serves_is_refused_and_leaves_nothing_queued(
    bare_gearman: list[tuple[str, int]],
) -> None:
    """gearmand keeps a job whose client has gone for ever: a request that
    no scheduler serves must never be sent."""
    with pytest.raises(GatekeeperError, match="unknown operator function 'bogus'"):
        admin.call(bare_gearman, "bogus", {}, timeout=5)
    with pytest.raises(GatekeeperError, match="no scheduler serves status"):
        admin.call(bare_gearman, "status", {}, timeout=5)
    assert {f: n for f, n in gearman_queued(bare_gearman).items() if n} == {}


def test_a_request_the_operator_gave_up_on_is_never_acted_on(
    bare_gearman: list[tuple[str, int]], tmp_path: Path
) -> None:
    """A scheduler registered but stuck: the operator gives up after its
    timeout; a scheduler that comes later does not act on the request, and
    nothing stays queued (gear's server drops it when the operator's client
    leaves; gearmand when a worker next asks for it)."""
    from gatekeeper.db.audit import AuditLog
    from gatekeeper.db.engine import Database

    stuck = gear.Worker("stuck-scheduler")
    stuck.addServer(*bare_gearman[0])
    stuck.waitForServer(10)
    stuck.registerFunction("gatekeeper:status")
    pause = threading.Event()
    try:
        # registerFunction only sends CAN_DO: wait until the server has it.
        while "gatekeeper:status" not in gearman_workers(bare_gearman):
            pause.wait(0.05)
        with pytest.raises(GatekeeperError, match="no scheduler answered status"):
            admin.call(bare_gearman, "status", {}, timeout=1)
    finally:
        stuck.shutdown()
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    db.migrate()
    called: list[object] = []
    worker = admin.AdminWorker(
        "late",
        bare_gearman,
        {"status": lambda args, expires: called.append(args)},
        secret=b"s" * 32,
        audit=AuditLog(db),
    )
    worker.start()
    try:
        while gearman_queued(bare_gearman).get("gatekeeper:status", 0) != 0:
            pause.wait(0.05)
    finally:
        worker.stop()
    assert called == []
    assert [e.outcome for e in AuditLog(db).recent(5) if e.outcome == "ok"] == []
    db.dispose()


def gearman_workers(where: list[tuple[str, int]]) -> set[str]:
    """Functions some worker has registered, by the servers' ``status``."""
    client = gear.Client(client_id="status")
    try:
        for host, port in where:
            client.addServer(host, port)
        client.waitForServer(10)
        names = set()
        for conn in client.active_connections:
            request = gear.StatusAdminRequest()
            conn.sendAdminRequest(request, timeout=10)
            for line in (request.response or b"").decode().splitlines():
                fields = line.split("\t")
                if len(fields) == 4 and int(fields[3]) > 0:
                    names.add(fields[0])
        return names
    finally:
        client.shutdown()


def test_the_commands_work_with_no_setup_for_whoever_owns_the_state(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gatekeeper enqueue`` and ``status`` as a person types them, on the
    scheduler's host: this user can read the site's secret, so the command
    makes its own short-lived admin token; the audit log, shown by
    ``status``, names the local user and shows outside text escaped."""
    from click.testing import CliRunner

    from gatekeeper.cli import main

    monkeypatch.delenv("GATEKEEPER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    assert box.app is not None and box.app.gearman is not None
    # The daemon's own state directory (the site file's), and its Gearman port.
    gearman = f"gearman:\n  listen: {{port: {box.app.gearman.port}}}\n"
    site = box.site_file(tmp_path / "gatekeeper.yaml", gearman)
    # Written as an attacker on the port would: escape sequences and a newline.
    send_raw(box, "gatekeeper:dequeue", b"\x1b[2J\x1b[31mpwned\nfake line")
    change = unapproved_change(box)
    args = ["--pipeline", "gate", "--project", "openstack/nova", "--change", change]
    result = CliRunner().invoke(main, ["enqueue", "-c", str(site), *args])
    assert result.exit_code == 0, result.output
    assert result.output == f"enqueued openstack/nova {change} in gate\n"

    result = CliRunner().invoke(main, ["status", "-c", str(site)])
    assert result.exit_code == 0, result.output
    audit = result.output[result.output.index("audit log") :].splitlines()
    assert "\x1b" not in result.output
    # Newest first: this status, the enqueue, the attacker's junk.
    assert "local:" in audit[1] and " status ok " in audit[1]
    assert "local:" in audit[2] and " enqueue ok " in audit[2]
    assert audit[3].endswith(
        "dequeue refused \\x1b[2J\\x1b[31mpwned\\nfake line: the arguments are not JSON: "
        "Expecting value: line 1 column 1 (char 0)"
    )

    result = CliRunner().invoke(main, ["status", "-c", str(site), "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)["audit"]
    assert [e["action"] for e in entries[:5]] == ["status", "audit", "status", "enqueue", "dequeue"]
