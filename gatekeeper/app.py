"""Assembles the components into one process (``gatekeeper run``) or a part
of them (``gatekeeper scheduler``, ``worker``, ``pool``)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.site import GerritHttpConfig, LabelConfig, SiteConfig
from gatekeeper.db.audit import AuditLog
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.db.mail_outbox import MailOutbox
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.admin import AdminWorker, Handler
from gatekeeper.dispatch.certs import Role, TlsFiles
from gatekeeper.dispatch.client import BuildDispatcher
from gatekeeper.dispatch.server import EmbeddedGearman
from gatekeeper.dispatch.signing import ResultSigner, ResultVerifier
from gatekeeper.dispatch.tls import check_external, describe, site_tls
from gatekeeper.dispatch.tokens import ensure_secret
from gatekeeper.errors import ConfigError, GatekeeperError, OperationError
from gatekeeper.gerrit.catchup import CatchUp
from gatekeeper.gerrit.changeinfo import ChangeQueries, RestChanges
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.ledger import EventLedger
from gatekeeper.gerrit.rest import GerritRest
from gatekeeper.gerrit.source import GerritSource
from gatekeeper.gerrit.transport import RestReview, ReviewTransport, SshReview
from gatekeeper.git.runner import gerrit_git_env
from gatekeeper.insights.flaky import FlakyNotes
from gatekeeper.insights.known_failures import recognised_of
from gatekeeper.insights.providers import ProviderWatch
from gatekeeper.insights.signatures import SignatureSet, load_signatures
from gatekeeper.metrics import SiteMetrics
from gatekeeper.model.listener import Listener
from gatekeeper.model.metrics import Census
from gatekeeper.model.results import NodeWait, Recognised, ResultEvent
from gatekeeper.pool.pool import Pool, describe_wait
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.base import Provider
from gatekeeper.scheduler import mail, operations
from gatekeeper.scheduler.merger import MergeQueue, Merger
from gatekeeper.scheduler.pipeline_state import warn_unused_disabled
from gatekeeper.scheduler.reporter import GerritReporter
from gatekeeper.scheduler.scheduler import Scheduler
from gatekeeper.scheduler.swift import SwiftSigner, unsigned_targets
from gatekeeper.scheduler.timer import Timer
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from gatekeeper.web.server import WebServer
from gatekeeper.worker.console import ConsoleServer
from gatekeeper.worker.executor import BuildExecutor
from gatekeeper.worker.recognise import FailureRecogniser
from gatekeeper.worker.server import Worker
from gatekeeper.worker.workspace import WorkspaceBuilder

log = logging.getLogger(__name__)

ALL = frozenset({"gearman", "scheduler", "worker", "pool"})


def default_labels(layout: Layout, site: SiteConfig) -> list[LabelConfig]:
    """Labels from the site file, plus one (min-ready 1) for every job's node."""
    labels = {label.name: label for label in site.labels}
    for name in layout.all_job_names():
        node = layout.job(name).node
        if node and node not in labels:
            labels[node] = LabelConfig(name=node, min_ready=1)
    return list(labels.values())


@dataclass
class Gatekeeper:
    """The running daemon. ``start``/``stop`` are called from the main thread."""

    site: SiteConfig
    listener: Listener | None = None
    components: frozenset[str] = ALL
    console: Callable[[str], None] | None = None
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}-worker")
    #: Serve the web in this process (``web.enabled`` permitting): the
    #: all-in-one and the sandbox do; a split site runs ``gatekeeper web``.
    serve_web: bool = True

    def __post_init__(self) -> None:
        self.layout = self._load_layout()
        self.db = Database(self.site.database)
        self.gearman: EmbeddedGearman | None = None
        self.scheduler: Scheduler | None = None
        #: Fires the layout's ``trigger: timer:`` cron lines (with the scheduler).
        self.timer: Timer | None = None
        self.merger: MergeQueue | None = None
        self.admin: AdminWorker | None = None
        self.dispatcher: BuildDispatcher | None = None
        self.pool: Pool | None = None
        self.worker: Worker | None = None
        self.connection: GerritConnection | None = None
        # The REST client of reviews and submits (gerrit.http), when set.
        self._rest: GerritRest | None = None
        self.providers: dict[str, Provider] = {
            p.name: make_provider(p, self.site.pool.name) for p in self.site.providers
        }
        self._listener_thread: threading.Thread | None = None
        self.catch_up: CatchUp | None = None
        #: Failure rates per provider, for the pool and the metrics.
        self.provider_watch = ProviderWatch.for_site(self.db, self.site.insights.providers)
        #: What every component counts into; ``metrics.prometheus.registry``
        #: is what the web serves at /metrics.
        self.metrics = SiteMetrics(
            self.site,
            Census(
                nodes=NodeStore(self.db).census,
                max_servers={p.name: p.max_servers for p in self.site.providers},
                gearman=lambda: self.gearman.queue() if self.gearman is not None else None,
                provider_rates=self.provider_watch.rates,
            ),
        )
        self.web: WebServer | None = None
        #: Where the web serves (``web.url``; the real port when it was 0).
        self.web_url = self.site.web.url
        #: The certificate each role of this process presents (None: plain TCP).
        self.tls: dict[Role, TlsFiles | None] = {}
        #: The known failures its worker searches failed builds' logs for.
        self.recogniser: FailureRecogniser | None = None

    def _load_layout(self) -> Layout:
        """The layout file, checked against this site too (its smtp reporters
        need the site's smtp section).

        :raises ConfigError: with one ``file:line: key: message`` line per problem.
        """
        layout = load_layout(self.site.layout)
        errors = mail.check_layout(layout, self.site.smtp)
        if errors:
            raise ConfigError(errors)
        warn_unused_disabled(layout)
        return layout

    @property
    def gearman_servers(self) -> list[tuple[str, int]]:
        if self.gearman is not None and not self.site.gearman.servers:
            return [(self.gearman.host, self.gearman.port)]
        return [(s.host, s.port) for s in self.site.gearman.client_servers]

    def start(self) -> None:
        site = self.site
        if "worker" in self.components:
            self._recogniser()  # a signature that does not load stops the start here
        site.state_dir.mkdir(parents=True, exist_ok=True)
        assert site.log_root is not None
        site.log_root.mkdir(parents=True, exist_ok=True)
        self.db.migrate()
        self._load_tls()
        if site.gearman.insecure:
            log.warning(
                "WARNING: Gearman is plain TCP with no certificates (gearman.insecure: true): "
                "build results are not authenticated; anyone who reaches its port can take "
                "builds and answer them with any result"
            )
        if self.serve_web and "scheduler" in self.components and site.web.enabled:
            # First: a port in use stops the start before any thread runs.
            self._start_web()
        if "gearman" in self.components and site.gearman.embedded and not site.gearman.servers:
            self.gearman = EmbeddedGearman(
                site.gearman.listen.host, site.gearman.listen.port, tls=self.tls_files(Role.SERVER)
            )
        self.metrics.start()
        if "pool" in self.components:
            labels = default_labels(self.layout, site)
            self.pool = Pool(
                site, self.db, self.providers, labels, self.metrics.metrics, self.provider_watch
            )
            self.pool.start()
        if "worker" in self.components:
            self._start_worker()
        if "scheduler" in self.components:
            self._start_scheduler()

    def _load_tls(self) -> None:
        """Find (or, on the all-in-one's first start, make) each role's certificate.

        :raises CertificateError: a file is missing, or an external server
            speaks plain TCP while this site expects TLS.
        """
        site = self.site
        embedded = "gearman" in self.components and site.gearman.embedded
        roles = [Role.SERVER] if embedded and not site.gearman.servers else []
        roles += [Role.WORKER] if "worker" in self.components else []
        roles += [Role.SCHEDULER] if "scheduler" in self.components else []
        for role in roles:
            # On a fresh TLS directory every certificate is named after the
            # worker, whose Gearman name must be its certificate's (RoleAcl
            # lets worker:N register only stop:N).
            self.tls_files(role)
        worker_tls = self.tls.get(Role.WORKER)
        if worker_tls is not None:
            name = worker_tls.identity().name
            if name != self.worker_name:
                log.info("worker name %s (from its certificate)", name)
            self.worker_name = name
        client_tls = self.tls.get(Role.SCHEDULER) or worker_tls
        if client_tls is not None and site.gearman.servers:
            for server in site.gearman.servers:
                check_external(server.host, server.port, client_tls)

    def live_status(self) -> dict[str, Any]:
        """The scheduler's status snapshot, made in its thread: the one the
        operator ``status`` request answers with.

        :raises OperationError: the scheduler did not answer in time.
        """
        scheduler = self.scheduler
        if scheduler is None:
            raise OperationError("the scheduler is not running")
        return scheduler.call(lambda: operations.status(scheduler), timeout=10)

    def _start_web(self) -> None:
        """The web, in this process, reading the scheduler directly.

        :raises ConfigError: ``web.listen`` cannot be listened on.
        """
        listen = self.site.web.listen
        ctx = WebContext(
            site=self.site,
            db=self.db,
            live=self.live_status,
            base_url=self.site.web.url,
            metrics=self.metrics.prometheus.registry,
            # The pool starts after the web: asked at request time.
            pool_backoff=self._pool_backoff if "pool" in self.components else None,
            # The admin worker's secret: a pasted token is checked as it would be.
            secret=self._admin_secret(),
            operate=self.operate,
        )
        self.web = WebServer(make_app(ctx), listen.host, listen.port)
        self.web.start()
        if listen.port == 0:
            # An ephemeral port (tests, the sandbox): links name the real one.
            ctx.base_url = self.web.url
        self.web_url = ctx.base_url

    def _admin_secret(self) -> bytes:
        assert self.site.admin.secret_file is not None  # resolve() sets it
        return ensure_secret(self.site.admin.secret_file)

    def operate(self, function: str, args: Mapping[str, object], token: str) -> object:
        """An operator request from the in-process web, answered by the admin
        worker's own path (token check, audit row) as one over Gearman is.

        :raises GatekeeperError: refused or failed (the worker's reason).
        """
        admin = self.admin
        if admin is None:
            raise OperationError("the scheduler is not running")
        request = {**args, "token": token, "expires": time.time() + 60.0}
        answer = admin.handle(function, json.dumps(request).encode())
        if not answer.get("ok"):
            raise GatekeeperError(str(answer.get("error") or "the scheduler refused"))
        return answer.get("result")

    def _pool_backoff(self) -> dict[str, float]:
        return self.pool.backing_off() if self.pool is not None else {}

    def tls_files(self, role: Role) -> TlsFiles | None:
        """This host's certificate for ``role`` (None on an insecure site).

        Taken from the TLS directory when it is there; otherwise, where the
        directory holds the site's CA key or nothing yet (the all-in-one's
        ``state/tls``, made at first start), issued now, named after this
        process's worker (see :meth:`_load_tls`).

        :raises CertificateError: it is missing and cannot be issued here.
        """
        if role not in self.tls:
            self.tls[role] = site_tls(self.site, role, name=self.worker_name)
            log.info("gearman %s: %s", role, describe(self.tls[role]))
        return self.tls[role]

    def _gerrit(self) -> GerritConnection:
        if self.site.gerrit is None:
            raise ConfigError("the site file has no 'gerrit' section (host, user, key, ...)")
        if self.connection is None:
            self.connection = GerritConnection(self.site.gerrit)
        return self.connection

    def _shared_rest(self, http: GerritHttpConfig) -> GerritRest:
        """The scheduler's REST client (reviews, submits, change reads),
        closed at stop."""
        if self._rest is None:
            self._rest = GerritRest(http)
        return self._rest

    def _change_queries(self, gerrit: GerritConnection) -> ChangeQueries:
        """Where the scheduler reads changes (and the reporter reads back):
        Gerrit's REST API when the site file has ``gerrit.http``, the same
        choice as for reviews; else ``gerrit query`` on ``gerrit``."""
        config = gerrit.config
        if config.http is None:
            return gerrit
        log.info("gerrit: change queries over REST at %s", config.http.url)
        return RestChanges(config, self._shared_rest(config.http))

    def _review_transport(self, gerrit: GerritConnection) -> ReviewTransport:
        """REST when the site file has ``gerrit.http``, else ``gerrit review``
        over SSH."""
        http = gerrit.config.http
        if http is None:
            return SshReview()
        log.info("gerrit: reviews and submits over REST at %s", http.url)
        return RestReview(self._shared_rest(http))

    def start_worker(self) -> None:
        """Start this process's worker now (one started without it)."""
        if self.worker is None:
            self.components = self.components | {"worker"}
            self._start_worker()

    def _start_worker(self) -> None:
        site = self.site
        gerrit = self._gerrit()
        assert site.log_root is not None
        executor = BuildExecutor(
            nodes=NodeStore(self.db),
            providers=self.providers,
            workspace=WorkspaceBuilder(
                site.state_dir / "git",
                gerrit_git_env(gerrit.config.key, gerrit.config.known_hosts, gerrit.config.port),
            ),
            git_url=gerrit.config.git_url,
            log_root=site.log_root,
            log_url_base=site.log_url,
            state_dir=site.state_dir,
            node_wait=site.worker.node_wait,
            hold_seconds=site.pool.hold_failed_hours * 3600,
            console=self.console,
            on_request=self.pool.wake if self.pool is not None else None,
            is_canceled=BuildStore(self.db).is_canceled,
            job_timeout=site.worker.job_timeout,
            hold_max=site.hold_max,
            describe_wait=self._describe_wait,
            log_max_bytes=site.worker.log_max_bytes,
            recognise=self._recogniser().recognise,
        )
        files = self.tls_files(Role.WORKER)
        self.worker = Worker(
            self.worker_name,
            self.gearman_servers,
            self.layout.all_job_names(),
            executor,
            site.worker.count,
            builds=BuildStore(self.db),
            heartbeat=site.worker.heartbeat,
            signer=ResultSigner.from_files(files) if files is not None else None,
            tls=files,
            consoles=ConsoleServer(
                site.worker.console_listen.host,
                site.worker.console_listen.port,
                advertise=site.worker.console_host,
            ),
        )
        self.worker.start()

    def _recogniser(self) -> FailureRecogniser:
        """The worker's known failures (``failures-dir``), loaded once.

        :raises ConfigError: a signature file does not load.
        """
        if self.recogniser is None:
            assert self.site.failures_dir is not None
            self.recogniser = FailureRecogniser(self.site.failures_dir, self.db)
        return self.recogniser

    def _recognised_of(self, uuid: str) -> list[Recognised]:
        """Build ``uuid``'s stored known failures, described by this process's
        signatures (the worker's, or ``failures-dir`` read now by a scheduler
        running alone). Called by the scheduler's restore."""
        if self.recogniser is not None:
            signatures = self.recogniser.signatures
        else:
            assert self.site.failures_dir is not None
            try:
                signatures = load_signatures(self.site.failures_dir)
            except ConfigError as exc:
                log.warning("known failures: %s; stored ones are named by id", exc)
                signatures = SignatureSet()
        return recognised_of(self.db, uuid, signatures)

    def _describe_wait(self, label: str, waited: float) -> NodeWait:
        """What the pool has for ``label``: this process's pool knows which
        providers it backs off; without one, the database tells the rest."""
        if self.pool is not None:
            return self.pool.describe_wait(label, waited)
        labels = {lb.name: lb for lb in default_labels(self.layout, self.site)}
        config = labels.get(label) or LabelConfig.model_validate({"name": label, "min-ready": 0})
        return describe_wait(NodeStore(self.db), self.providers, config, waited)

    def _start_scheduler(self) -> None:
        gerrit = self._gerrit()
        queries = self._change_queries(gerrit)
        source = GerritSource(queries)
        self.scheduler = None
        files = self.tls_files(Role.SCHEDULER)
        self.dispatcher = BuildDispatcher(
            self.gearman_servers,
            self._put_result,
            builds=BuildStore(self.db),
            registration_grace=self.site.gearman.registration_grace,
            verifier=ResultVerifier.from_files(files) if files is not None else None,
            tls=files,
        )
        self.dispatcher.wait_for_server(30)
        self.scheduler = Scheduler(
            layout=self.layout,
            source=source,
            dispatcher=self.dispatcher,
            builds=BuildStore(self.db),
            reporter=GerritReporter(
                gerrit,
                transport=self._review_transport(gerrit),
                # Over SSH, each reporter thread reads back on its own connection.
                queries=queries if queries is not gerrit else None,
            ),
            zuul_url=gerrit.config.git_url,
            log_url=self.site.log_url,
            local_workers=frozenset({self.worker_name}) if self.worker is not None else frozenset(),
            merger=self._start_merger(),
            metrics=self.metrics.metrics,
            flaky_note=self._flaky_note(),
            mail=self._mail_queue(),
        )
        if self.site.swift is not None:
            self.scheduler.context.swift = SwiftSigner.from_config(self.site.swift)
        self.scheduler.context.recognised_of = self._recognised_of
        self._warn_unsigned(self.layout)
        ledger = EventLedger(self.db, retention=gerrit.config.catchup_max_age)
        self.scheduler.ledger = ledger
        self.scheduler.start()
        self.timer = Timer(self.layout, self.db, self.scheduler.put_trigger)
        self.timer.start()
        assert self.site.admin.secret_file is not None  # resolve() sets it
        self.admin = AdminWorker(
            self.worker_name,
            self.gearman_servers,
            self._admin_handlers(),
            secret=ensure_secret(self.site.admin.secret_file),
            audit=AuditLog(self.db),
            tls=files,
        )
        self.admin.start()
        if self.listener is not None:
            # Started first: the stream's first opening asks it to catch up.
            config = gerrit.config
            self.catch_up = CatchUp(
                # Its own connection or client: it runs in its own thread.
                GerritConnection(config)
                if config.http is None
                else RestChanges(config, GerritRest(config.http)),
                ledger,
                self.scheduler.put_trigger,
                interval=config.reconcile_interval,
                margin=config.catchup_margin,
                max_age=config.catchup_max_age,
                rest=GerritRest(config.http) if config.http is not None else None,
            )
            self.catch_up.metrics = self.metrics.metrics
            self.catch_up.start()
            listener = self.listener
            self._listener_thread = threading.Thread(
                target=listener.run,
                args=(self.scheduler.put_trigger,),
                name="listener",
                daemon=True,
            )
            self._listener_thread.start()

    def _flaky_note(self) -> Callable[[str], str] | None:
        """The failure report's flaky line, when the site's insights ask for it."""
        config = self.site.insights
        if not config.flaky_comment:
            return None
        notes = FlakyNotes(self.db, config.flaky_days, config.flaky_min_runs, config.flaky_cache)
        return notes.line

    def _mail_queue(self) -> mail.MailQueue | None:
        """The smtp reporters' mailer, with what the last run left unsent."""
        if self.site.smtp is None:
            return None
        queue = mail.MailQueue(self.site.smtp, outbox=MailOutbox(self.db))
        queue.resume()
        return queue

    def _start_merger(self) -> MergeQueue:
        """The gate's merger, publishing under ``<state>/merger`` (served to
        workers as ``file://`` URLs: they share this host or its filesystem)."""
        config = self._gerrit().config
        merger = Merger(
            self.site.state_dir / "merger",
            config.git_url,
            gerrit_git_env(config.key, config.known_hosts, config.port),
            url=self.site.merger_url,
        )
        self.merger = MergeQueue(merger)
        self.merger.start()
        return self.merger

    def _admin_handlers(self) -> dict[str, Handler]:
        """Operator requests, each run in the scheduler thread (the audit
        log, only read, in the admin worker's)."""
        scheduler = self.scheduler
        assert scheduler is not None
        audit = AuditLog(self.db)

        def on(operation: Callable[Concatenate[Scheduler, ...], object]) -> Handler:
            def handle(args: dict[str, Any], expires: float | None) -> object:
                def act() -> object:
                    # The scheduler thread may get to it after the operator
                    # gave up and was told it failed: then it must not happen.
                    if expires is not None and time.time() > expires:
                        raise OperationError("the request expired before the scheduler got to it")
                    return operation(scheduler, **args)

                wait = 60.0 if expires is None else max(0.0, expires - time.time())
                return scheduler.call(act, timeout=wait)

            return handle

        return {
            "enqueue": on(operations.enqueue),
            "dequeue": on(operations.dequeue),
            "promote": on(operations.promote),
            "status": on(operations.status),
            "audit": lambda args, _: [e.as_dict() for e in audit.recent(args["limit"])],
        }

    def reconfigure(self, wait: float = 30.0) -> bool:
        """Load the layout file again and switch every component to it.

        An invalid layout is logged with its errors and the current one
        stays. Returns whether the new layout took effect. The known-failure
        signatures are loaded again too (the current ones stay if they fail).
        """
        if self.recogniser is not None:
            self.recogniser.reload()
        try:
            layout = self._load_layout()
        except GatekeeperError as exc:
            log.error("reconfigure: %s; keeping the current layout", exc)
            return False
        self.layout = layout
        if self.scheduler is not None:
            self._warn_unsigned(layout)
        if self.worker is not None:
            self.worker.set_jobs(layout.all_job_names())
        if self.scheduler is not None and not self.scheduler.reconfigure(layout).wait(wait):
            log.warning("reconfigure: the scheduler has not switched within %.0fs", wait)
        if self.timer is not None:
            self.timer.set_layout(layout)
        log.info("reconfigured from %s", self.site.layout)
        return True

    def _warn_unsigned(self, layout: Layout) -> None:
        """Jobs with ``swift:`` targets on a site without a ``swift:`` section
        run without SWIFT_* parameters: said once per layout load."""
        if self.site.swift is None:
            for line in unsigned_targets(layout):
                log.warning("%s", line)

    def _put_result(self, event: ResultEvent) -> None:
        if self.scheduler is not None:
            self.scheduler.put_result(event)

    def stop(self) -> None:
        """Stop (SIGTERM): no new builds; running ones get ``worker.stop-grace``
        seconds to finish, and are reported while the scheduler still runs;
        what is still running then is aborted (ABORTED in the builds table).
        Builds not yet handed to a worker stay recorded as dispatched."""
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.dispatcher is not None:
            self.dispatcher.hold()
        if self.worker is not None:
            self.worker.stop(self.site.worker.stop_grace)
            self.worker = None
        if self.listener is not None:
            self.listener.stop()
        if self._listener_thread is not None:
            self._listener_thread.join(timeout=10)
        if self.catch_up is not None:
            self.catch_up.stop()
            self.catch_up.connection.close()
        if self.admin is not None:
            self.admin.stop()
        if self.timer is not None:
            self.timer.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        if self.merger is not None:
            self.merger.stop()
        if self.dispatcher is not None:
            self.dispatcher.shutdown()
        if self.worker is not None:
            self.worker.stop()
        if self.pool is not None:
            self.pool.stop()
        if self.gearman is not None:
            self.gearman.stop()
        if self.connection is not None:
            self.connection.close()
        self.metrics.stop()
        self.db.dispose()
