"""Is a freshly booted node reachable? SSH's answer, not a ping's.

A node is ready when its sshd completes a key exchange (its host key is
recorded then, trust on first use at boot, as ``ssh-keyscan`` would) and,
when the pool has a key for it, accepts a login and runs a command.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import paramiko

from gatekeeper.errors import ProviderError
from gatekeeper.worker.transport_ssh import log_in

log = logging.getLogger(__name__)

# One attempt to connect may take this long before it counts as a miss.
ATTEMPT_TIMEOUT = 10.0


def known_hosts_line(host: str, port: int, key: paramiko.PKey) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.get_name()} {key.get_base64()}"


def host_key(host: str, port: int, timeout: float = ATTEMPT_TIMEOUT) -> paramiko.PKey:
    """The host key ``host:port`` presents in a key exchange.

    :raises ProviderError: no SSH server answered.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProviderError(f"ssh {host}:{port}: {exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise ProviderError(f"ssh {host}:{port}: {exc}") from exc
    finally:
        transport.close()
        sock.close()


def login(
    host: str, port: int, username: str, private_key: Path, key: paramiko.PKey, timeout: float
) -> paramiko.SSHClient:
    """An SSH session on the node, trusting only ``key``.

    :raises ProviderError:
    """
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{host}]:{port}" if port != 22 else host, key.get_name(), key)
    try:
        log_in(client, host, port, username, private_key, timeout)
    except (OSError, paramiko.SSHException) as exc:
        client.close()
        raise ProviderError(f"ssh {username}@{host}:{port}: {exc}") from exc
    return client


def run(client: paramiko.SSHClient, command: str, stdin: bytes = b"", timeout: float = 3600) -> str:
    """Run ``command`` (feeding it ``stdin``); its output.

    :raises ProviderError: it could not run or exited non-zero.
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
        raise ProviderError(f"ssh command failed: {exc}") from exc
    if status != 0:
        raise ProviderError(f"{command!r} exited {status}: {(out + err).strip()[-2000:]}")
    return out


def wait_for_ssh(
    host: str,
    port: int,
    deadline: float,
    stop: threading.Event,
    username: str = "",
    private_key: Path | None = None,
    interval: float = 1.0,
) -> str:
    """Wait until ``host:port`` answers SSH (and, with a key, lets us in);
    return its known_hosts line.

    :raises ProviderError: not by ``deadline`` (a ``time.monotonic()``), or stopped.
    """
    last = "no attempt"
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            key = host_key(host, port, min(ATTEMPT_TIMEOUT, remaining))
            if private_key is not None:
                client = login(
                    host, port, username, private_key, key, min(ATTEMPT_TIMEOUT, remaining)
                )
                try:
                    run(client, "true", timeout=min(ATTEMPT_TIMEOUT, remaining))
                finally:
                    client.close()
            return known_hosts_line(host, port, key)
        except ProviderError as exc:
            last = str(exc)
            log.debug("waiting for ssh on %s:%d: %s", host, port, exc)
        stop.wait(min(interval, max(0.0, deadline - time.monotonic())))
    raise ProviderError(f"{host}:{port} did not answer SSH in time ({last})")
