"""The Gerrit simulator's public face: start, stop, seed, and look inside."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko

from gatekeeper.errors import GerritError
from gatekeeper.sandbox.gerrit_sim import admin
from gatekeeper.sandbox.gerrit_sim.faults import Faults
from gatekeeper.sandbox.gerrit_sim.records import ReviewRecord, SimChange
from gatekeeper.sandbox.gerrit_sim.rest import RestApi, RestServer
from gatekeeper.sandbox.gerrit_sim.server import SshServer
from gatekeeper.sandbox.gerrit_sim.state import DEFAULT_VERSION, Account, LabelGrant, SimState

log = logging.getLogger(__name__)

HOST_KEY_NAME = "ssh_host_ed25519_key"


class GerritSimulator:
    """A small Gerrit on 127.0.0.1 that speaks SSH: stream-events, query,
    review (votes, submit with real merges), version, and git over SSH where
    pushes to ``refs/for/<branch>`` become changes.

    Created and driven by the test or demo thread; serves from its own
    threads (see :mod:`gatekeeper.sandbox.gerrit_sim.server`). Listeners run
    in one dispatcher thread, in emission order.

    ``version`` picks the dialect: ``"3.11.1"`` (the default; any 3.x) or
    ``"2.13"``. It is what ``gerrit version`` answers and what the SSH banner
    says (``SSH-2.0-GerritCodeReview_<version> (APACHE-SSHD-...)``), and it
    decides the JSON shapes (see :mod:`gatekeeper.sandbox.gerrit_sim.events`
    for the table of differences), whether a bad query exits 0 (3.x) or 1,
    and which event types are emitted. Patch set kinds are computed from git
    against the previous patch set (``Repo.patchset_kind``).

    Events and what causes them: a push (patchset-created), ``gerrit review``
    (comment-added, change-abandoned/-restored, change-merged, then
    ref-updated and, 3.x, batch-ref-updated), ``gerrit set-reviewers``
    (reviewer-added/-deleted), ``gerrit create-project`` (project-created),
    ``gerrit set-head`` (3.x: project-head-updated); and, where Gerrit has
    only REST or the UI, the methods :meth:`set_topic` (topic-changed),
    :meth:`set_hashtags` (hashtags-changed), :meth:`set_wip` and
    :meth:`set_private` (3.x: wip-/private-state-changed), :meth:`delete_vote`
    (3.x: vote-deleted) and :meth:`delete_change` (3.x: change-deleted).
    Seeding with :meth:`create_project` emits nothing: the project was there.

    Simplifications, on purpose: any account may stream events and vote any
    label (Code-Review and Verified -2..+2, Workflow -1..+1); submit needs
    Code-Review +2, Verified +2 and Workflow +1 with no blocking vote.
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        web_url: str = "http://127.0.0.1/",
        version: str = DEFAULT_VERSION,
    ) -> None:
        """:raises GerritError: a version whose dialect the simulator does not speak."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.state = SimState(self.root, web_url, version)
        self.faults = Faults()
        self._host_key = _load_host_key(self.root / HOST_KEY_NAME)
        self._server: SshServer | None = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._dispatcher: threading.Thread | None = None
        #: The REST side (served once :meth:`start_http` is called).
        self.rest = RestApi(self.state)
        self._http: RestServer | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``host:port`` (a free port when 0) and serve."""
        self._server = SshServer(self.state, self._host_key, self.host, self.port, self.faults)
        self.port = self._server.port
        subscriber = self.state.subscribe()
        self._dispatcher = threading.Thread(
            target=self._dispatch, args=(subscriber,), name="gerrit-sim-listeners", daemon=True
        )
        self._dispatcher.start()
        self._server.start()
        log.info("Gerrit simulator listening on %s:%d", self.host, self.port)

    def start_http(self, port: int = 0) -> str:
        """Serve the REST API (and the events-log plugin) on ``host:port``;
        returns its base URL. Stopped by :meth:`stop`."""
        if self._http is None:
            self._http = RestServer(self.rest, self.host, port)
            self._http.start()
        return self._http.url

    @property
    def http_url(self) -> str:
        assert self._http is not None, "the REST API is not started"
        return self._http.url

    def set_http_password(self, username: str, password: str) -> None:
        """The password ``username`` authenticates with over REST."""
        self.rest.set_password(username, password)

    def events_log(self, enabled: bool) -> None:
        """Whether the server has the events-log plugin (on by default)."""
        self.rest.events_log = enabled

    def stop(self) -> None:
        """Close every connection (stream-events sessions too) and stop."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.state.close_subscribers()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)
            self._dispatcher = None

    def __enter__(self) -> GerritSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, subscriber: Any) -> None:
        while True:
            event = subscriber.get()
            if event is None:
                return
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed")

    # -- seeding ------------------------------------------------------------------

    def known_hosts_line(self) -> str:
        """The host key as a known_hosts line for this host and port."""
        return (
            f"[{self.host}]:{self.port} {self._host_key.get_name()} {self._host_key.get_base64()}"
        )

    def add_account(
        self,
        username: str,
        name: str,
        email: str,
        public_key: str,
        groups: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Add an account that logs in with ``public_key`` (an OpenSSH .pub line).

        :raises GerritError: the key line is malformed.
        """
        parts = public_key.split()
        if len(parts) < 2:
            raise GerritError(f"not an OpenSSH public key line: {public_key!r}")
        account = Account(username, name, email, parts[0], parts[1], frozenset(groups))
        with self.state.lock:
            self.state.accounts[username] = account

    def grant_label(
        self, label: str, group: str, minimum: int, maximum: int, project: str = ""
    ) -> None:
        """Let ``group`` vote ``label`` from ``minimum`` to ``maximum`` in
        ``project`` ('' for All-Projects). Once a label has a grant, accounts
        outside every granted group may not vote it."""
        with self.state.lock:
            self.state.grants.setdefault(project, []).append(
                LabelGrant(label, group, minimum, maximum)
            )

    def set_stream_events(self, username: str, allowed: bool) -> None:
        """Give or take the account's 'Stream Events' capability."""
        with self.state.lock:
            self.state.accounts[username].stream_events = allowed

    def set_submit_requirements(self, project: str, needed: dict[str, int]) -> None:
        """The project's submit requirements: label -> the vote needed."""
        with self.state.lock:
            self.state.requirements[project] = dict(needed)

    def create_project(
        self, name: str, files: dict[str, str | bytes] | None = None, branch: str = "master"
    ) -> None:
        """Create a project whose branch holds one commit with ``files``.

        :raises GerritError: bad or duplicate name, or git failed.
        """
        self.state.create_project(name, files or {"README": f"{name}\n"}, branch)

    @property
    def version(self) -> str:
        return self.state.version

    @property
    def dialect(self) -> str:
        """``"3"`` or ``"2.13"``."""
        return self.state.dialect

    # -- what Gerrit does over REST or in its UI ------------------------------------

    def set_topic(self, change: int, topic: str, who: str) -> None:
        """Set the topic ("" clears it): topic-changed.

        :raises KeyError: no such change.
        """
        admin.set_topic(self.state, change, topic, who)

    def set_hashtags(
        self, change: int, who: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> None:
        """Add and remove hashtags: hashtags-changed.

        :raises KeyError: no such change.
        """
        admin.set_hashtags(self.state, change, add or [], remove or [], who)

    def set_wip(self, change: int, wip: bool, who: str) -> None:
        """Mark work in progress, or ready: 3.x sends wip-state-changed."""
        admin.set_flag(self.state, change, "wip", wip, who)

    def set_private(self, change: int, private: bool, who: str) -> None:
        """Mark private, or not: 3.x sends private-state-changed."""
        admin.set_flag(self.state, change, "private", private, who)

    def delete_vote(self, change: int, label: str, reviewer: str, who: str) -> None:
        """Remove ``reviewer``'s vote on ``label``: 3.x sends vote-deleted.

        :raises GerritError: no such vote.
        """
        admin.delete_vote(self.state, change, label, reviewer, who)

    def delete_change(self, change: int, who: str) -> None:
        """Delete an open change and its refs: change-deleted.

        :raises GerritError: the change is closed.
        """
        admin.delete_change(self.state, change, who)

    def create_tag(self, project: str, tag: str, who: str, branch: str = "master") -> str:
        """Tag the tip of ``branch``: ref-updated for ``refs/tags/<tag>``; the sha.

        :raises GerritError: no such project or branch, or the tag exists.
        """
        return admin.create_tag(self.state, project, tag, who, branch)

    # -- looking inside -------------------------------------------------------------

    def get_change(self, number: int) -> SimChange:
        """A snapshot of change ``number``.

        :raises KeyError: no such change.
        """
        return self.state.snapshot(number)

    def branch_head(self, project: str, branch: str = "master") -> str:
        """The sha at the tip of ``branch``.

        :raises GerritError: no such project or branch.
        """
        sha = self.state.project(project).repo.rev(f"refs/heads/{branch}")
        if sha is None:
            raise GerritError(f"{project}: branch {branch} not found")
        return sha

    def events(self) -> list[dict[str, Any]]:
        """Every event emitted so far, oldest first."""
        return self.state.events()

    def reviews(self) -> list[ReviewRecord]:
        """Every ``gerrit review`` received so far, oldest first."""
        with self.state.lock:
            return list(self.state.reviews)

    def send_raw_line(self, text: str) -> None:
        """Write ``text`` as a line to every stream-events session (tests of bad input)."""
        self.state.emit_raw(text)

    # -- faults, for tests -------------------------------------------------------

    def cut_streams(self) -> int:
        """Drop every stream-events connection abruptly; returns how many.

        Events emitted before a listener reconnects reach no stream (they are
        counted in :attr:`unstreamed_events`).
        """
        assert self._server is not None, "the simulator is not started"
        return self._server.cut_streams()

    def withhold_events(self, withhold: bool = True) -> None:
        """While on, events are recorded (and queryable) but sent to no stream."""
        with self.state.lock:
            self.state.withholding = withhold

    def send_dropped_output(self) -> None:
        """Tell every stream-events session that events were dropped, as Gerrit
        does when a reader is too slow."""
        self.state.emit_raw(json.dumps({"type": "dropped-output"}))

    def stream_count(self) -> int:
        """How many stream-events sessions are open (and sending)."""
        assert self._server is not None, "the simulator is not started"
        return self._server.stream_count()

    @property
    def unstreamed_events(self) -> int:
        """Events no stream-events session was sent (none open, or withheld)."""
        with self.state.lock:
            return self.state.unstreamed

    def hold_reviews(self, change: int, username: str = "") -> None:
        """``gerrit review`` of ``change`` (by ``username``, or anyone) stalls
        from now on: it is not run, and no answer comes, until
        :meth:`release_reviews`; then the stalled ones are dropped unanswered
        (never run), as when Gerrit's SSH session dies."""
        self.faults.hold_reviews(change, username)

    def release_reviews(self, change: int) -> None:
        """Reviews of ``change`` run again; the stalled ones are dropped."""
        self.faults.release_reviews(change)

    def stalled_reviews(self, change: int) -> int:
        """How many reviews of ``change`` stalled (each try of a client counts)."""
        return self.faults.stalled(change)

    def cut_after_submit(self, change: int) -> None:
        """The next ``gerrit review --submit`` of ``change`` runs (the change
        merges, if it may), then its SSH connection is dropped before the
        answer: the client cannot tell whether it ran."""
        self.faults.cut_after_submit(change)

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(event)`` for each later event, from the dispatcher thread."""
        self._listeners.append(callback)

    def git_url(self, project: str, user: str) -> str:
        return f"ssh://{user}@{self.host}:{self.port}/{project}"


def _load_host_key(path: Path) -> paramiko.PKey:
    """Load the ed25519 host key, generating it on first use.

    :raises GerritError: ssh-keygen failed or the key cannot be read.
    """
    if not path.exists():
        proc = subprocess.run(
            ["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-C", "gerrit-sim", "-f", str(path)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise GerritError(f"ssh-keygen failed: {proc.stderr.decode(errors='replace')}")
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise GerritError(f"cannot load host key {path}: {exc}") from exc
