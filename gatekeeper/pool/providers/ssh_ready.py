"""Is a freshly booted node reachable? SSH's answer, not a ping's.

A node is ready when its sshd completes a key exchange (its host key is
recorded then, trust on first use at boot, as ``ssh-keyscan`` would) and,
when the pool has a key for it, accepts a login and runs a command. Every
later login trusts only the key recorded here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gatekeeper.errors import ProviderError, SSHError
from gatekeeper.node import ssh

log = logging.getLogger(__name__)

# One attempt to connect may take this long before it counts as a miss.
ATTEMPT_TIMEOUT = 10.0


@contextmanager
def provider_errors() -> Iterator[None]:
    """SSH failures inside the block raise ``ProviderError``, the seam's error.

    :raises ProviderError:
    """
    try:
        yield
    except SSHError as exc:
        raise ProviderError(str(exc)) from exc


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
        timeout = min(ATTEMPT_TIMEOUT, remaining)
        try:
            key = ssh.scan_host_key(host, port, timeout)
            if private_key is not None:
                client = ssh.connect(
                    host, port, username, private_key, host_keys=[key], timeout=timeout
                )
                try:
                    ssh.run(client, "true", timeout=timeout)
                finally:
                    client.close()
            return ssh.known_hosts_line(host, port, key)
        except SSHError as exc:
            last = str(exc)
            log.debug("waiting for ssh on %s:%d: %s", host, port, exc)
        stop.wait(min(interval, max(0.0, deadline - time.monotonic())))
    raise ProviderError(f"{host}:{port} did not answer SSH in time ({last})")
