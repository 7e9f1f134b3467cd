"""The one SSH connect: to Gerrit, to a build node, to a booting cloud server.

Every connection checks the server's host key against a known_hosts file or
a set of keys recorded earlier (an unknown key is refused unless a caller
asks, as Gerrit's ``accept-unknown-host`` does; a changed one always is),
logs in with one key file or key object (never an agent, never keys found
in ~/.ssh), bounds every wait, and sets TCP_NODELAY. paramiko's errors are
translated here into :class:`SSHError`, whose text never holds key material.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

import paramiko

from gatekeeper.errors import SSHError

CONNECT_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0


def host_entry(host: str, port: int) -> str:
    """How known_hosts names ``host:port`` (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(host: str, port: int, key: paramiko.PKey) -> str:
    return f"{host_entry(host, port)} {key.get_name()} {key.get_base64()}"


def load_key(path: Path) -> paramiko.PKey:
    """A private key of any type paramiko knows.

    :raises SSHError: the file is missing or not a key (its content is never shown).
    """
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise SSHError(f"cannot load SSH key {path}: {exc.__class__.__name__}") from exc


def _socket(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise SSHError(f"cannot connect to {host}:{port}: {exc}") from exc
    # Commands are small request/response exchanges: without TCP_NODELAY,
    # Nagle's algorithm adds ~40 ms to each on a reused connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(
    host: str,
    port: int,
    username: str,
    key: Path | paramiko.PKey,
    *,
    known_hosts: Path | None = None,
    host_keys: Iterable[paramiko.PKey] = (),
    accept_unknown_host: bool = False,
    timeout: float = CONNECT_TIMEOUT,
    keepalive: int = 0,
) -> paramiko.SSHClient:
    """A logged-in client that trusts only the host keys in ``known_hosts``
    and ``host_keys``; ``accept_unknown_host`` lets a host with no recorded
    key in (remembered for this client only). Every wait (TCP, banner,
    authentication) is bounded by ``timeout``; ``keepalive`` seconds between
    keepalives on a long-lived connection (0: none).

    :raises SSHError: unreadable known_hosts or key, unreachable, unknown or
        changed host key, key refused.
    """
    pkey = load_key(key) if isinstance(key, Path) else key
    client = paramiko.SSHClient()
    if known_hosts is not None:
        try:
            client.load_host_keys(str(known_hosts))
        except OSError as exc:
            raise SSHError(f"cannot read known_hosts {known_hosts}: {exc}") from exc
    for host_key in host_keys:
        client.get_host_keys().add(host_entry(host, port), host_key.get_name(), host_key)
    # paramiko refuses a changed key whatever the policy.
    policy = paramiko.AutoAddPolicy() if accept_unknown_host else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)
    sock = _socket(host, port, timeout)
    try:
        client.connect(
            host,
            port=port,
            sock=sock,
            username=username,
            pkey=pkey,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        _close(client, sock)
        raise SSHError(f"host key for {host}:{port} does not match the one recorded") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        _close(client, sock)
        raise SSHError(f"ssh {username}@{host}:{port}: {exc}") from exc
    transport = client.get_transport()
    if transport is not None and keepalive:
        transport.set_keepalive(keepalive)
    return client


def _close(client: paramiko.SSHClient, sock: socket.socket) -> None:
    client.close()
    sock.close()


def scan_host_key(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> paramiko.PKey:
    """The host key ``host:port`` presents in a key exchange, as
    ``ssh-keyscan`` reads it: how the pool records a new server's key at
    boot, so that every later :func:`connect` can check it.

    :raises SSHError: no SSH server answered.
    """
    sock = _socket(host, port, timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise SSHError(f"ssh {host}:{port}: {exc}") from exc
    finally:
        transport.close()
        sock.close()


def run(
    client: paramiko.SSHClient,
    command: str,
    stdin: bytes = b"",
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """Run ``command`` to its end (fed ``stdin``, then end-of-file); its output.

    :raises SSHError: it could not run, went quiet for ``timeout`` seconds,
        or exited non-zero (the end of its output says why).
    """
    try:
        channel_in, stdout, stderr = client.exec_command(command, timeout=timeout)
        if stdin:
            channel_in.write(stdin)
        channel_in.channel.shutdown_write()
        out = stdout.read().decode("utf-8", errors="replace")
        err = stderr.read().decode("utf-8", errors="replace")
        status = stdout.channel.recv_exit_status()
    except (OSError, paramiko.SSHException) as exc:
        raise SSHError(f"ssh command failed: {exc}") from exc
    if status != 0:
        name = command.split("\n", 1)[0][:80]
        raise SSHError(f"{name!r} exited {status}: {(out + err).strip()[-2000:]}")
    return out
