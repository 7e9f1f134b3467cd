"""RoleAcl: what each certificate role may register and submit on the embedded server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.dispatch.tls import RoleAcl

pytestmark = pytest.mark.timeout(30)

REGISTER = [
    ("worker:w1", b"build:gate-devstack-vm", True),
    ("worker:w1", b"stop:w1", True),
    ("worker:w1", b"stop:w2", False),  # another worker's stop requests
    ("worker:w1", b"gatekeeper:enqueue", False),
    ("scheduler:gk", b"gatekeeper:status", True),
    ("scheduler:gk", b"build:x", False),
    ("operator:alice", b"build:x", False),
    ("operator:alice", b"gatekeeper:status", False),
    ("pool:p", b"build:x", False),
    ("server:s", b"build:x", False),
    ("nobody", b"build:x", False),  # not <role>:<name>
    (None, b"build:x", False),  # no certificate at all
]
INVOKE = [
    ("scheduler:gk", b"build:x", True),
    ("scheduler:gk", b"stop:w1", True),
    ("scheduler:gk", b"gatekeeper:status", True),
    ("operator:alice", b"gatekeeper:enqueue", True),
    ("operator:alice", b"build:x", False),
    ("operator:alice", b"stop:w1", False),
    ("worker:w1", b"build:x", False),
    ("worker:w1", b"gatekeeper:status", False),
    ("pool:p", b"gatekeeper:status", False),
    (None, b"gatekeeper:status", False),
]


@pytest.mark.parametrize(("subject", "name", "allowed"), REGISTER)
def test_register(subject: str | None, name: bytes, allowed: bool) -> None:
    assert RoleAcl().canRegister(subject, name) is allowed


@pytest.mark.parametrize(("subject", "name", "allowed"), INVOKE)
def test_invoke(subject: str | None, name: bytes, allowed: bool) -> None:
    assert RoleAcl().canInvoke(subject, name) is allowed


def test_nobody_may_grant() -> None:
    assert not RoleAcl().canGrant("scheduler:gk")


def test_certs_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    site = tmp_path / "tls"
    made = runner.invoke(main, ["certs", "init", "--dir", str(site), "--name", "gk1"])
    assert made.exit_code == 0, made.output
    assert "worker:gk1" in made.output and (site / "ca.key").exists()
    again = runner.invoke(main, ["certs", "init", "--dir", str(site)])
    assert again.exit_code != 0 and "already has a CA" in again.output
    out = tmp_path / "build-3"
    issued = runner.invoke(
        main,
        [
            "certs",
            "issue",
            "--dir",
            str(site),
            "--role",
            "worker",
            "--name",
            "b3",
            "--out",
            str(out),
        ],
    )
    assert issued.exit_code == 0, issued.output
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "worker.key", "worker.pem"]
    assert (out / "worker.key").stat().st_mode & 0o077 == 0
    other = tmp_path / "other"
    assert runner.invoke(main, ["certs", "init", "--dir", str(other)]).exit_code == 0
    (out / "stranger.pem").write_bytes((other / "worker.pem").read_bytes())
    shown = runner.invoke(main, ["certs", "show", "--dir", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "worker:b3, expires" in shown.output
    assert "stranger.pem: NOT USABLE: the certificate is not issued by this site's CA" in (
        shown.output
    )
