"""The SSH connection to Gerrit: version, query, review, stream-events.

This module is the only place that sends a Gerrit command; every argument
is quoted by :mod:`gatekeeper.gerrit.cmdline` so that hostile text (commit
subjects, comments, project names) arrives as literal text.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko

from gatekeeper.config.site import GerritConfig
from gatekeeper.errors import (
    GerritAccessError,
    GerritError,
    GerritOutcomeUnknownError,
    SSHError,
)
from gatekeeper.gerrit import cmdline
from gatekeeper.gerrit.stream_lines import LineSplitter, OverlongLine
from gatekeeper.model.outside import shown
from gatekeeper.node import ssh

log = logging.getLogger(__name__)

#: Seconds a ``gerrit review`` may take before its answer is given up on.
REVIEW_TIMEOUT = 60.0

#: Gerrit < 2.13 sends only the votes a comment changed, without oldValue.
OLD_VALUE_SINCE = (2, 13)


#: Gerrit names itself and its version in its SSH identification string.
_BANNER_VERSION = re.compile(r"GerritCodeReview_(\d+\.\d+(?:\.\d+)?)")


def parse_version(text: str) -> tuple[int, ...]:
    """``gerrit version 3.10.3`` -> (3, 10, 3); unknown -> ()."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def ssh_client(
    host: str,
    port: int,
    user: str,
    key: Path,
    known_hosts: Path,
    accept_unknown_host: bool = False,
    timeout: float = 30.0,
    keepalive: int = 15,
) -> paramiko.SSHClient:
    """An SSH client connected with the host key verified against ``known_hosts``
    (an unknown host is let in, for this process, only when asked for).

    :raises GerritError: unknown or changed host key, refused auth, network error.
    """
    try:
        return ssh.connect(
            host,
            port,
            user,
            key,
            known_hosts=known_hosts,
            accept_unknown_host=accept_unknown_host,
            timeout=timeout,
            keepalive=keepalive,
        )
    except SSHError as exc:
        raise GerritError(str(exc)) from exc


class GerritConnection:
    """Runs Gerrit commands over one cached SSH connection.

    Safe to share between threads: commands are serialised by a lock (the
    scheduler thread is the main user; the sandbox and tests use it too).
    """

    def __init__(self, config: GerritConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._version: tuple[int, ...] | None = None

    # -- plumbing ---------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        """A fresh client (the caller owns it); used for stream-events."""
        c = self.config
        return ssh_client(
            c.host,
            c.port,
            c.user,
            c.key,
            c.known_hosts,
            c.accept_unknown_host,
            keepalive=c.keepalive,
        )

    def _cached_client(self) -> paramiko.SSHClient:
        client = self._client
        transport = client.get_transport() if client else None
        if client is None or transport is None or not transport.is_active():
            if client is not None:
                client.close()
            self._client = client = self.connect()
        return client

    def run(
        self, argv: list[str], timeout: float = 60.0, idempotent: bool = False
    ) -> tuple[int, str, str]:
        """Run one command; returns (exit status, stdout, stderr).

        A command is sent again on a new connection only when it provably
        never reached Gerrit (the cached connection could not open a
        channel), or when it is ``idempotent`` (a query): a ``review
        --submit`` that Gerrit may have run must not run twice.

        :raises GerritOutcomeUnknownError: the command was sent but no answer came
            (timeout, connection lost, no exit status): it may have run.
        :raises GerritError: Gerrit could not be reached (the command was not sent).
        """
        command = cmdline.join(argv)
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._open_channel(timeout)
                except (GerritError, TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
                    # Nothing was sent: a cached connection that died quietly
                    # fails here, and a new one is safe to try.
                    self.close_locked()
                    if attempt == 2:
                        raise GerritError(f"{argv[:2]} could not be sent: {exc}") from exc
                    log.info("gerrit connection lost (%s); reconnecting", shown(exc))
                    continue
                try:
                    return _exchange(channel, command, timeout)
                except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
                    self.close_locked()
                    if idempotent and attempt == 1:
                        log.info("no answer to %s (%s); asking again", argv[:2], shown(exc))
                        continue
                    raise GerritOutcomeUnknownError(
                        f"{argv[:2]} was sent but no answer came: {exc or type(exc).__name__}"
                    ) from exc
        raise GerritError("unreachable")  # pragma: no cover

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        """A new session channel on the cached connection; caller holds the lock.

        :raises GerritError: no connection could be made.
        """
        transport = self._cached_client().get_transport()
        if transport is None:
            raise GerritError("the SSH connection has no transport")
        return transport.open_session(timeout=timeout)

    def close_locked(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    # -- commands ---------------------------------------------------------
    def version(self) -> tuple[int, ...]:
        """Gerrit's version: from the SSH banner when it names one
        (``SSH-2.0-GerritCodeReview_3.11.1 (...)``), else ``gerrit version``.

        :raises GerritError: Gerrit cannot be reached, or the command failed.
        """
        if self._version is None:
            banner = self.banner_version()
            if banner:
                self._version = banner
                log.info("connected to Gerrit %s", ".".join(map(str, banner)))
                return banner
            status, out, err = self.run(["gerrit", "version"], idempotent=True)
            if status != 0:
                raise GerritError(f"gerrit version failed: {err.strip()}")
            self._version = parse_version(out)
            log.info("connected to %s", out.strip())
        return self._version

    def banner_version(self) -> tuple[int, ...]:
        """The version in the server's SSH banner, or () when it names none.

        :raises GerritError: Gerrit cannot be reached.
        """
        with self._lock:
            transport = self._cached_client().get_transport()
            remote = transport.remote_version if transport is not None else ""
        match = _BANNER_VERSION.search(remote or "")
        return parse_version(match.group(1)) if match else ()

    def sends_old_value(self) -> bool:
        """Whether comment-added events mark changed votes with oldValue."""
        version = self.version()
        return not version or version >= OLD_VALUE_SINCE

    def query(self, query: str, *options: str) -> list[dict[str, Any]]:
        """``gerrit query --format JSON``; returns the change rows, not the stats row.

        :raises GerritError: the command failed or printed something that is not JSON.
        """
        # "--": a query may start with "-" (``-age:90s``).
        rows, _ = self._query_page(["gerrit", "query", "--format", "JSON", *options, "--", query])
        return rows

    #: What the scheduler asks of every change it reads.
    CHANGE_OPTIONS = (
        "--current-patch-set",
        "--all-approvals",
        "--dependencies",
        "--submit-records",
        "--files",
        "--commit-message",
    )

    def query_change(self, number: int) -> dict[str, Any] | None:
        rows = self.query(f"change:{int(number)}", *self.CHANGE_OPTIONS)
        return rows[0] if rows else None

    def query_comments(self, number: int) -> dict[str, Any] | None:
        """Change ``number``'s row with its messages (``--comments``).

        :raises GerritError:
        """
        rows = self.query(f"change:{int(number)}", "--comments")
        return rows[0] if rows else None

    def query_changes(self, query: str) -> list[dict[str, Any]]:
        """Every change ``query`` finds, with :attr:`CHANGE_OPTIONS`.

        :raises GerritError:
        """
        return self.query(query, *self.CHANGE_OPTIONS)

    #: Pages overlap by this many rows: a change updated while we page moves
    #: to the front and shifts the rest back by one.
    PAGE_OVERLAP = 10

    def query_all(self, query: str, *options: str, max_pages: int = 1000) -> list[dict[str, Any]]:
        """Every row of ``query``, following Gerrit's pages (``--start``) while
        its stats row says ``moreChanges``; each change once.

        :raises GerritError:
        """
        rows: dict[Any, dict[str, Any]] = {}
        start = 0
        for _ in range(max_pages):
            argv = ["gerrit", "query", "--format", "JSON", *options]
            if start:
                argv += ["--start", str(start)]
            # "--": a query may start with "-" (``-age:90s``).
            page, more = self._query_page([*argv, "--", query])
            for row in page:
                rows.setdefault(row.get("number"), row)
            if not more or not page:
                break
            start = max(start + 1, start + len(page) - self.PAGE_OVERLAP)
        return list(rows.values())

    def _query_page(self, argv: list[str]) -> tuple[list[dict[str, Any]], bool]:
        """Run one ``gerrit query`` (read-only: asked again if the answer is lost).

        :raises GerritError:
        """
        status, out, err = self.run(argv, idempotent=True)
        if status != 0:
            # A bad query: 3.x prints an error row and exits 0; older servers
            # may exit non-zero with the row on stdout. Say what Gerrit said.
            if '"error"' in out:
                parse_query_output(out)
            said = shown(err.strip() or out.strip(), 500)
            raise GerritError(f"gerrit query {shown(argv[-1], 200)} failed ({status}): {said}")
        return parse_query_output(out)

    def review(
        self,
        project: str,
        change: int,
        patchset: int,
        message: str = "",
        labels: dict[str, int] | None = None,
        submit: bool = False,
        timeout: float = REVIEW_TIMEOUT,
    ) -> None:
        """``gerrit review``: vote, comment and optionally submit.

        :raises GerritOutcomeUnknownError: sent, but no answer came: it may have
            been applied (ask Gerrit, do not send it again blindly).
        :raises GerritError: Gerrit refused (for a submit: the change did not
            merge), or could not be reached.
        """
        argv = review_argv(project, change, patchset, message, labels or {}, submit)
        status, out, err = self.run(argv, timeout=timeout)
        if status != 0:
            raise GerritError(
                f"gerrit review {change},{patchset} failed ({status}): {(err or out).strip()}"
            )

    def stream_lines(
        self,
        client: paramiko.SSHClient,
        stop: threading.Event,
        max_line: int,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[bytes | OverlongLine]:
        """Yield raw stream-events lines until the stream ends or ``stop`` is set.

        A line longer than ``max_line`` bytes is not kept: it is yielded as an
        :class:`~gatekeeper.gerrit.stream_lines.OverlongLine` (its head and
        size) once its newline arrives, and the next line is read as usual.

        :raises GerritError: the connection broke.
        """
        try:
            channel = client.get_transport().open_session()  # type: ignore[union-attr]
            channel.settimeout(1.0)
            channel.exec_command(cmdline.join(["gerrit", "stream-events"]))
        except (paramiko.SSHException, OSError, AttributeError) as exc:
            raise GerritError(f"cannot start stream-events: {exc}") from exc
        if on_open is not None:
            # Gerrit has accepted the command: events from now on reach us.
            on_open()
        splitter = LineSplitter(max_line)
        try:
            while not stop.is_set():
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    continue
                except (paramiko.SSHException, OSError) as exc:
                    raise GerritError(f"stream-events connection broke: {exc}") from exc
                if not data:
                    if channel.exit_status_ready():
                        err = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
                        status = channel.recv_exit_status()
                        if status != 0 and "capability" in err:
                            # Gerrit's words name the capability the account lacks.
                            raise GerritAccessError(f"stream-events refused: {err}")
                        raise GerritError(f"stream-events ended (exit {status}): {err}")
                    raise GerritError("stream-events connection closed")
                yield from splitter.feed(data)
        finally:
            channel.close()


def _exchange(channel: paramiko.Channel, command: str, timeout: float) -> tuple[int, str, str]:
    """Send ``command`` on ``channel`` and read its whole answer.

    :raises TimeoutError: no data for ``timeout`` seconds.
    :raises EOFError: the channel closed without an exit status.
    :raises paramiko.SSHException: the request was refused or the connection broke.
    """
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        stdout = channel.makefile("rb")
        stderr = channel.makefile_stderr("rb")
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        if not channel.status_event.wait(timeout):
            raise TimeoutError(f"no exit status within {timeout:.0f}s")
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status < 0:
        # paramiko's "no exit status": the connection went before the answer.
        raise EOFError("the connection closed before Gerrit answered")
    return status, out, err


def parse_query_output(out: str) -> tuple[list[dict[str, Any]], bool]:
    """The change rows of ``gerrit query --format JSON`` output, and whether
    its stats row says more changes follow (``moreChanges``).

    :raises GerritError: a line is not a JSON object, or Gerrit reported an error.
    """
    rows: list[dict[str, Any]] = []
    more = False
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise GerritError(f"gerrit query printed non-JSON: {shown(line)}") from exc
        except RecursionError as exc:
            # Valid JSON, perhaps, but nested past what Python reads.
            deep = f"gerrit query printed JSON nested too deeply: {shown(line)}"
            raise GerritError(deep) from exc
        if not isinstance(row, dict):
            raise GerritError(f"gerrit query printed a non-object: {shown(line)}")
        if row.get("type") == "stats":
            more = row.get("moreChanges") is True
            continue
        if row.get("type") == "error":
            message = row.get("message")
            said = message if isinstance(message, str) else type(message).__name__
            raise GerritError(f"gerrit query error: {shown(said, 500)}")
        rows.append(row)
    return rows, more


def review_argv(
    project: str,
    change: int,
    patchset: int,
    message: str,
    labels: dict[str, int],
    submit: bool,
) -> list[str]:
    """The argument vector of a ``gerrit review`` (quoted later, as a whole)."""
    argv = ["gerrit", "review", "--project", project]
    if message:
        argv += ["--message", message]
    for name, value in labels.items():
        argv += ["--label", f"{name}={int(value):+d}" if value else f"{name}=0"]
    if submit:
        argv.append("--submit")
    argv.append(f"{int(change)},{int(patchset)}")
    return argv
