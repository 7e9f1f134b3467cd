"""The one SSH connect (gatekeeper.node.ssh) against a real sshd: it trusts
only recorded host keys, logs in with the one key it is given, and says what
went wrong as an SSHError."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko
import pytest

from gatekeeper.errors import SSHError, TransportError
from gatekeeper.node import ssh
from tests.fixtures.sshd import SSHServer

pytestmark = pytest.mark.sshd


def test_connect_with_known_hosts_runs_a_command(sshd: SSHServer) -> None:
    client = ssh.connect(
        sshd.host, sshd.port, sshd.username, sshd.private_key, known_hosts=sshd.known_hosts
    )
    try:
        transport = client.get_transport()
        assert transport is not None and isinstance(transport.sock, socket.socket)
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert ssh.run(client, "cat", stdin=b"hello\n") == "hello\n"
    finally:
        client.close()


def test_connect_with_a_scanned_host_key_and_a_key_object(sshd: SSHServer) -> None:
    key = ssh.scan_host_key(sshd.host, sshd.port)
    assert ssh.known_hosts_line(sshd.host, sshd.port, key) in sshd.known_hosts.read_text()
    client = ssh.connect(
        sshd.host, sshd.port, sshd.username, ssh.load_key(sshd.private_key), host_keys=[key]
    )
    client.close()


def test_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(SSHError, match="not found in known_hosts"):
        ssh.connect(sshd.host, sshd.port, sshd.username, sshd.private_key, known_hosts=empty)


def test_changed_host_key_is_refused_even_when_unknown_hosts_are_accepted(
    sshd: SSHServer,
) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.private_key))
    with pytest.raises(SSHError, match="does not match"):
        ssh.connect(
            sshd.host,
            sshd.port,
            sshd.username,
            sshd.private_key,
            host_keys=[other],
            accept_unknown_host=True,
        )


def test_a_key_that_is_not_a_key_is_refused_without_its_content(
    sshd: SSHServer, tmp_path: Path
) -> None:
    bogus = tmp_path / "id_bogus"
    bogus.write_text("secret-looking text\n")
    with pytest.raises(SSHError) as info:
        ssh.connect(sshd.host, sshd.port, sshd.username, bogus, known_hosts=sshd.known_hosts)
    assert "secret-looking" not in str(info.value)


def test_no_server_is_a_transport_error(sshd: SSHServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="cannot connect"):
        ssh.connect("127.0.0.1", port, sshd.username, sshd.private_key, timeout=2)


def test_a_failing_command_says_how_it_ended(sshd: SSHServer) -> None:
    client = ssh.connect(
        sshd.host, sshd.port, sshd.username, sshd.private_key, known_hosts=sshd.known_hosts
    )
    try:
        with pytest.raises(SSHError, match="exited 3: no mirror"):
            ssh.run(client, "echo no mirror >&2; exit 3")
    finally:
        client.close()
