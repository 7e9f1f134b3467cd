"""The site configuration: where Gerrit is, and where gatekeeper keeps things.

Everything has a default except the Gerrit connection, so ``gatekeeper run``
needs only a few lines::

    gerrit:
      host: review.example.org
      user: gatekeeper
      key: ~/.ssh/gatekeeper_ed25519
      known_hosts: ~/.ssh/known_hosts

Relative paths are resolved against ``state_dir``'s parent, i.e. the
directory gatekeeper was started in, unless they are absolute.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from gatekeeper.errors import ConfigError
from gatekeeper.model.gerrit_vocabulary import MAX_EVENT_BYTES
from gatekeeper.model.names import project_name_problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*\Z")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``90``, ``90s``, ``15m``, ``48h``, ``1d``.

    :raises ValueError: anything else (pydantic reports it with the key path).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 48h, 1d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


#: Seconds, written as a number or ``30s``/``10m``/``24h``/``1d``.
Duration = Annotated[float, BeforeValidator(parse_duration)]


class GerritHttpConfig(_Strict):
    """Gerrit's REST API: queries, reviews and submits go over it when set
    (stream-events stays on SSH). The password is the account's HTTP
    password, from here or from ``password-file`` (never logged)."""

    url: str
    user: str
    password: str = Field(default="", repr=False)
    password_file: Path | None = Field(default=None, alias="password-file")

    def secret(self) -> str:
        """The password, read from ``password-file`` when it is given.

        :raises ConfigError: the file cannot be read, or no password at all.
        """
        if self.password_file is not None:
            try:
                text = self.password_file.expanduser().read_text().strip()
            except OSError as exc:
                raise ConfigError(f"gerrit.http.password-file: {exc.strerror}") from exc
        else:
            text = self.password
        if not text:
            raise ConfigError("gerrit.http: no password (password or password-file)")
        return text


class GerritConfig(_Strict):
    """How to reach Gerrit over SSH (and over REST when ``http`` is set)."""

    host: str
    port: int = 29418
    user: str
    key: Path
    known_hosts: Path = Path("~/.ssh/known_hosts")
    # Accept an unknown host key (never a changed one). Off by default.
    accept_unknown_host: bool = Field(default=False, alias="accept-unknown-host")
    # The https URL people use to open a change; used only in messages.
    web_url: str = Field(default="", alias="web-url")
    keepalive: int = 15
    # Catch up with Gerrit's query every so many seconds even when the stream
    # seems fine (it catches up after a reconnect and on dropped-output too).
    reconcile_interval: float = Field(default=600.0, alias="reconcile-interval", gt=0)
    # How far before the last catch-up the next one looks (clock skew, slow index).
    catchup_margin: float = Field(default=60.0, alias="catchup-margin", ge=0)
    # How far back a catch-up ever looks, and how long seen events are kept.
    catchup_max_age: float = Field(default=2 * 86400.0, alias="catchup-max-age", gt=0)
    # The longest stream-events line read (bytes). Every event of a change
    # carries its commit message; a longer line is skipped, logged, and
    # starts a catch-up, which asks Gerrit's query for what it held.
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, alias="max-event-bytes", ge=4096)
    # Gerrit's REST API for queries, reviews and submits (and exact replay
    # of missed events through the events-log plugin, when Gerrit has it).
    http: GerritHttpConfig | None = None

    @property
    def git_url(self) -> str:
        """The base URL workers clone from; ``<git_url>/<project>``."""
        return f"ssh://{self.user}@{self.host}:{self.port}"


class GearmanServer(_Strict):
    host: str = "127.0.0.1"
    port: int = 4730


class GearmanConfig(_Strict):
    """The embedded server by default; external servers when listed."""

    embedded: bool = True
    listen: GearmanServer = Field(default_factory=GearmanServer)
    servers: list[GearmanServer] = Field(default_factory=list)
    # Seconds a build waits for some worker to register its job before it is
    # NOT_REGISTERED (workers may still be connecting when the scheduler starts).
    registration_grace: float = Field(default=5.0, alias="registration-grace", ge=0)
    # Where this host's certificates are: ca.pem and <role>.pem/.key per role
    # (gatekeeper.dispatch.certs). Default <state-dir>/tls, made at first start
    # when it has no CA yet (the all-in-one and the sandbox need no setup).
    tls_dir: Path | None = Field(default=None, alias="tls-dir")
    # Plain TCP Gearman, with no certificates: anyone who reaches the port can
    # take builds and answer them. Only when the site file says so; logged at start.
    insecure: bool = False

    @property
    def client_servers(self) -> list[GearmanServer]:
        return self.servers or [self.listen]


class StaticHost(_Strict):
    """One SSH host of a ``static`` provider."""

    name: str
    host: str
    port: int = 22
    username: str
    private_key: Path = Field(alias="private-key")
    known_hosts: Path = Field(alias="known-hosts")
    label: str
    # Where builds put their workspace on the host; wiped after each build.
    workdir: str = "/tmp/gatekeeper"


class ImageKit(_Strict):
    """gatekeeper's devstack image kit (``gatekeeper/kit/image``), run on the
    template before the label's own setup scripts: ``projects`` cloned from
    ``<git-url>/<project>`` into ``/opt/git``, a pip cache of their
    requirements, the packages devstack lists, and the ``stack`` user."""

    git_url: str = Field(alias="git-url", min_length=1)
    projects: list[str] = Field(min_length=1)
    # openstack: where on the build server the kit lays the image out: / (the
    # server itself, which then also gets the packages and the stack user) or
    # a directory (a tree, which gets neither). A local image is always laid
    # out in its template directory.
    root: str = Field(default="/", pattern=r"^/")

    @field_validator("projects")
    @classmethod
    def _project_names(cls, projects: list[str]) -> list[str]:
        for name in projects:
            problem = project_name_problem(name)
            if problem:
                raise ValueError(f"project {name!r} {problem}")
        return projects


class ProviderImage(_Strict):
    """How one label's nodes are made on a provider, and its daily image.

    ``openstack``: the template server boots ``base-image``, the ``setup``
    scripts run on it over SSH as ``username`` with ``private-key``, and a
    snapshot of it becomes the label's image. ``local``: the setup scripts
    run in a template directory, which is then copied as the image.
    """

    label: str
    base_image: str = Field(default="", alias="base-image")
    # Local script files, run in order on the template (bash, as username).
    setup: list[Path] = Field(default_factory=list)
    username: str = "root"
    private_key: Path | None = Field(default=None, alias="private-key")
    # Extra server metadata, besides the pool's own tags.
    metadata: dict[str, str] = Field(default_factory=dict)
    # gatekeeper's devstack image kit, run before ``setup``.
    kit: ImageKit | None = None

    @property
    def builds(self) -> bool:
        """Whether a daily image is made (without any setup it would only
        copy the base: nodes boot that)."""
        return bool(self.setup) or self.kit is not None


class ProviderConfig(_Strict):
    name: str
    driver: Literal["local", "static", "openstack"] = "local"
    max_servers: int = Field(default=4, alias="max-servers", ge=0)
    # local: the root under which nodes and images live (default state/nodes);
    # openstack: where node host keys are kept (default state/providers/<name>).
    root: Path | None = None
    # static: the hosts.
    hosts: list[StaticHost] = Field(default_factory=list)
    # openstack: a cloud name from clouds.yaml (openstacksdk finds the file).
    cloud: str = ""
    region: str = ""
    # API calls per second to this cloud (0: no limit).
    rate: float = Field(default=10.0, ge=0)
    # From create to ACTIVE and SSH answering, per attempt.
    boot_timeout: Duration = Field(default=600.0, alias="boot-timeout")
    # A BUILDING node older than this is reaped (all attempts together).
    launch_timeout: Duration = Field(default=3600.0, alias="launch-timeout")
    launch_retries: int = Field(default=3, alias="launch-retries", ge=1)
    # The flavor: by name, else the smallest with at least min-ram MB.
    flavor_name: str = Field(default="", alias="flavor-name")
    min_ram: int = Field(default=0, alias="min-ram", ge=0)
    # Network names or ids to attach (none: the cloud's default).
    networks: list[str] = Field(default_factory=list)
    # The port nodes answer SSH on.
    ssh_port: int = Field(default=22, alias="ssh-port")
    # How often a booting server, a snapshot or SSH is looked at again.
    poll_interval: Duration = Field(default=2.0, alias="poll-interval")
    # Per label: base image, setup scripts, login, metadata.
    images: list[ProviderImage] = Field(default_factory=list)
    # local: jobs run under bubblewrap (gatekeeper.node.confine); with the
    # network or without it (devstack needs it), as this uid/gid (never 0).
    network: bool = True
    job_uid: int = Field(default=65534, alias="job-uid", ge=1)
    job_gid: int = Field(default=65534, alias="job-gid", ge=1)
    # local: the bubblewrap binary (a path, or a name looked up in PATH).
    bwrap: str = "bwrap"
    # local: where bubblewrap cannot run, run jobs anyway, as gatekeeper's
    # own user, seeing all it can see. Only for a host and changes you trust.
    unconfined: bool = False

    @model_validator(mode="after")
    def _hosts_only_for_static(self) -> ProviderConfig:
        if self.driver != "static" and self.hosts:
            raise ValueError("'hosts' is only for the static driver")
        jail_keys = ("network", "unconfined", "bwrap", "job_uid", "job_gid")
        fields = type(self).model_fields
        changed = [k for k in jail_keys if getattr(self, k) != fields[k].get_default()]
        if self.driver != "local" and changed:
            # Refused rather than ignored: 'network: false' must not seem to work.
            # (Their defaults pass, so a dumped config reads back.)
            raise ValueError(
                "'network', 'unconfined', 'bwrap', 'job-uid' and 'job-gid' are only for"
                " the local driver (its jail)"
            )
        if self.driver == "static" and not self.hosts:
            raise ValueError("a static provider needs at least one entry in 'hosts'")
        if self.driver == "openstack" and not self.cloud:
            raise ValueError("an openstack provider needs 'cloud' (a clouds.yaml name)")
        if self.driver == "openstack":
            for image in self.images:
                if not image.base_image:
                    raise ValueError(f"images[{image.label}]: 'base-image' is required")
        labels = [image.label for image in self.images]
        if len(labels) != len(set(labels)):
            raise ValueError("a label appears twice in 'images'")
        return self

    def image(self, label: str) -> ProviderImage | None:
        """This provider's settings for ``label``, if it has any."""
        return next((i for i in self.images if i.label == label), None)


class LabelConfig(_Strict):
    name: str
    min_ready: int = Field(default=1, alias="min-ready", ge=0)
    providers: list[str] = Field(default_factory=list)
    # Nodes of this label held at once (failed builds and operators' holds
    # together); None: the pool's hold-max. See PoolConfig.hold_max.
    hold_max: int | None = Field(default=None, alias="hold-max", ge=0)
    # Launch no node of this label on a provider significantly worse over all
    # jobs (gatekeeper.insights.providers), and delete its READY ones there,
    # while another provider serving the label is not backing off.
    deprioritize_failing: bool = Field(default=False, alias="deprioritize-failing")


class PoolConfig(_Strict):
    interval: float = 1.0
    hold_failed_hours: float = Field(default=24.0, alias="hold-failed-hours", ge=0)
    # Held nodes per label, unless the label says otherwise. Held nodes are
    # real servers and count against max-servers, so the cap keeps them few:
    # a failed build beyond it releases the label's oldest hold made for a
    # failed build (an operator's hold is never released, but counts).
    hold_max: int = Field(default=2, alias="hold-max", ge=0)
    # Tagged on every server as metadata, so this pool knows its own (leaks).
    name: str = "gatekeeper"
    # Launches (each waits for its server to boot) running at once.
    launch_threads: int = Field(default=32, alias="launch-threads", ge=1)
    # A provider whose launches keep failing waits this long, doubling per
    # failure up to backoff-max, before it gets launches again.
    backoff: Duration = 10.0
    backoff_max: Duration = Field(default=600.0, alias="backoff-max")


class ImageUpdateConfig(_Strict):
    """Daily images: how often, and how many to keep (current and previous)."""

    interval: Duration = 86400.0
    keep: int = Field(default=2, ge=1)
    # Boot, setup and snapshot together, per image.
    timeout: Duration = 7200.0


class ReapConfig(_Strict):
    """The reaper: how often, and what counts as old."""

    interval: Duration = 3600.0
    # Overrides pool.hold-failed-hours when given.
    hold_failed: Duration | None = Field(default=None, alias="hold-failed")
    max_ready_age: Duration = Field(default=86400.0, alias="max-ready-age")
    # A BUILDING node older than this is reaped, on every provider; each
    # provider's launch-timeout applies too (the shorter of the two wins).
    max_building_age: Duration | None = Field(default=None, alias="max-building-age")
    # A delete not seen through after this long is issued again.
    delete_retry: Duration = Field(default=60.0, alias="delete-retry")


class ConsoleListen(_Strict):
    """Where a worker serves its running builds' live consoles."""

    host: str = "127.0.0.1"
    # 0: any free port (the build row records the one taken).
    port: int = Field(default=0, ge=0, le=65535)


class WorkerConfig(_Strict):
    count: int = Field(default=2, ge=1)
    # How long a worker waits for a node before the build is NODE_FAILURE.
    node_wait: float = Field(default=600.0, alias="node-wait")
    # A job's timeout (seconds) when its layout entry sets none.
    job_timeout: float = Field(default=3600.0, alias="job-timeout", gt=0)
    # On SIGTERM, how long running builds may go on before they are aborted.
    stop_grace: float = Field(default=60.0, alias="stop-grace", ge=0)
    # Seconds between a worker's heartbeat writes for its running builds.
    heartbeat: float = Field(default=5.0, gt=0)
    # The most a build's collected log files may hold together (bytes); the
    # file that crosses it is cut, later ones skipped, and console.txt says so.
    log_max_bytes: int = Field(default=300 * 2**20, alias="log-max-bytes", ge=0)
    # The live console (read by the web, which may be on another host).
    console_listen: ConsoleListen = Field(default_factory=ConsoleListen, alias="console-listen")
    # The host the web dials for it (default: the listen host).
    console_host: str = Field(default="", alias="console-host")


class AdminConfig(_Strict):
    """Operator requests (enqueue, dequeue, promote, status)."""

    # The secret operator tokens are signed with (HS256). Default
    # <state-dir>/admin.secret, made at the scheduler's first start (mode 0600).
    secret_file: Path | None = Field(default=None, alias="secret-file")


class WebListen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class WebConfig(_Strict):
    """The web (status, builds, logs, nodes, metrics): on 127.0.0.1 unless told."""

    # `gatekeeper run` and the sandbox start it in-process when true.
    enabled: bool = True
    listen: WebListen = Field(default_factory=WebListen)
    # The URL people reach it at (behind a proxy, say); links in pages and in
    # Gerrit comments start with it. Default: http://<listen host>:<port>/.
    url: str = ""


class StatsdConfig(_Strict):
    """Where statsd listens: metrics go there too, under Zuul v2.5's and
    Nodepool's names (``zuul.pipeline.<name>.current_changes``,
    ``nodepool.nodes.<state>``...), each after ``prefix`` when one is given."""

    host: str
    port: int = Field(default=8125, ge=1, le=65535)
    prefix: str = ""
    # How often the levels (nodes by state, Gearman's queue) are sent.
    interval: Duration = Field(default=10.0, gt=0)


class LogsConfig(_Strict):
    """Build logs under the log root."""

    # Logs older than this many days are removed by the reaper; 0 keeps them.
    keep_days: float = Field(default=0, alias="keep-days", ge=0)


class SwiftConfig(_Strict):
    """Where jobs' ``swift:`` targets upload (Zuul v2.5's ``[swift]`` of zuul.conf).

    gatekeeper signs Swift FormPost temporary URLs with ``temp-url-key`` and
    hands them to builds as ``SWIFT_<name>_*`` parameters; it never talks
    to Swift itself, so the account's ``X-Account-Meta-Temp-Url-Key`` must
    be set to the same key (``swift post -m Temp-URL-Key:<key>``), and the
    storage URL is given, not looked up. The ``default-*`` values apply to a
    target that does not set its own. The key is never logged.
    """

    #: The account's storage URL, e.g. ``https://swift.example.org/v1/AUTH_logs``.
    storage_url: str = Field(alias="storage-url", min_length=1)
    temp_url_key: str = Field(default="", alias="temp-url-key", repr=False)
    temp_url_key_file: Path | None = Field(default=None, alias="temp-url-key-file")
    default_container: str = Field(default="", alias="default-container")
    #: How long a signature stays valid (seconds, or ``2h``...).
    default_expiry: Duration = Field(default=7200.0, alias="default-expiry", gt=0)
    default_max_file_size: int = Field(default=104857600, alias="default-max-file-size", ge=1)
    default_max_file_count: int = Field(default=10, alias="default-max-file-count", ge=1)
    #: A path under the container, before the build's LOG_PATH.
    default_file_path_prefix: str = Field(default="", alias="default-file-path-prefix")
    #: Where the uploaded files are served (``SWIFT_<name>_LOGSERVER_PREFIX``).
    default_logserver_prefix: str = Field(default="", alias="default-logserver-prefix")

    @model_validator(mode="after")
    def _one_key(self) -> SwiftConfig:
        if bool(self.temp_url_key) == (self.temp_url_key_file is not None):
            raise ValueError("give one of 'temp-url-key' and 'temp-url-key-file'")
        return self

    def secret(self) -> str:
        """The signing key, read from ``temp-url-key-file`` when it is given.

        :raises ConfigError: the file cannot be read or is empty.
        """
        if self.temp_url_key_file is None:
            return self.temp_url_key
        try:
            text = self.temp_url_key_file.expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"swift.temp-url-key-file: {exc.strerror}") from exc
        if not text:
            raise ConfigError(f"swift.temp-url-key-file: {self.temp_url_key_file} is empty")
        return text


class ProviderInsightsConfig(_Strict):
    """Provider correlation (``gatekeeper.insights.providers``): the window,
    the family-wise level a provider is flagged at, the runs a provider (and
    the others together) need before it is compared, and how often the
    pool and the metrics look again."""

    days: float = Field(default=7.0, gt=0)
    level: float = Field(default=0.05, gt=0, lt=1)
    min_runs: int = Field(default=30, alias="min-runs", ge=1)
    refresh: Duration = Field(default=300.0, gt=0)


class InsightsConfig(_Strict):
    """Why builds fail (``gatekeeper/insights/``): each insight's settings."""

    providers: ProviderInsightsConfig = Field(default_factory=ProviderInsightsConfig)

    # A failed job with a flaky history gets "this job failed on unchanged
    # code in N% of recent runs" in the failure comment. On by default: it
    # tells the developer whether to look at the change or recheck, and is
    # only said of a job with an incident and flaky-min-runs runs.
    flaky_comment: bool = Field(default=True, alias="flaky-comment")
    # The window of that rate, in days.
    flaky_days: float = Field(default=7.0, alias="flaky-days", gt=0)
    # Fewer runs than this in the window say too little (1 of 2 is "50%").
    flaky_min_runs: int = Field(default=10, alias="flaky-min-runs", ge=1)
    # How long a job's rate is reused by later reports before it is read
    # again (a broken dependency fails every change at once: one read a
    # minute per job, not one per report); 0 reads it for every report.
    flaky_cache: Duration = Field(default=60.0, alias="flaky-cache", ge=0)


def mail_addresses(value: str) -> list[str]:
    """The addresses of ``value``, one or more mail addresses separated by
    commas (``Ann <ann@example.org>, ci@example.org``), each with one ``@`` and
    nothing that could end a header line.

    :raises ValueError: naming the address at fault.
    """
    found: list[str] = []
    for address in value.split(","):
        _, bare = parseaddr(address)
        if "\r" in address or "\n" in address or bare.count("@") != 1:
            raise ValueError(f"not a mail address: {address.strip()!r}")
        found.append(bare)
    return found


class SmtpConfig(_Strict):
    """Where SMTP reporters send their mail (``smtp:`` in a pipeline's
    reporters), and who it is from and to when the layout does not say."""

    server: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    default_from: str = Field(default="gatekeeper@localhost", alias="default-from")
    # None: every smtp reporter of the layout must name its own 'to'.
    default_to: str | None = Field(default=None, alias="default-to")
    # Ask the server for STARTTLS (and check its certificate) before sending.
    starttls: bool = False
    # The CA that signed the server's certificate (default: the system's).
    ca_file: Path | None = Field(default=None, alias="ca-file")
    # One SMTP conversation's timeout (connect, each command).
    timeout: Duration = Field(default=30.0, gt=0)
    # A mail the server did not take is sent again after this long, doubled
    # per failed try up to retry-max, for as long as the daemon runs.
    retry: Duration = Field(default=2.0, gt=0)
    retry_max: Duration = Field(default=300.0, alias="retry-max", gt=0)

    @field_validator("default_from")
    @classmethod
    def _from(cls, value: str) -> str:
        mail_addresses(value)
        return value

    @field_validator("default_to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        if value is not None:
            mail_addresses(value)
        return value


class SiteConfig(_Strict):
    """The whole site file. Only ``gerrit`` is required for ``gatekeeper run``."""

    gerrit: GerritConfig | None = None
    layout: Path = Path("layout.yaml")
    state_dir: Path = Field(default=Path("state"), alias="state-dir")
    database: str = ""
    log_root: Path | None = Field(default=None, alias="log-root")
    log_url: str = Field(default="", alias="log-url")
    # Where workers fetch the gate's merged states (ZUUL_URL): the file://
    # URL of <state-dir>/merger by default; set it when that directory is
    # served some other way (git daemon, http) to workers on other hosts.
    merger_url: str = Field(default="", alias="merger-url")
    gearman: GearmanConfig = Field(default_factory=GearmanConfig)
    providers: list[ProviderConfig] = Field(
        default_factory=lambda: [ProviderConfig(name="local", driver="local")]
    )
    labels: list[LabelConfig] = Field(default_factory=list)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    image_update: ImageUpdateConfig = Field(default_factory=ImageUpdateConfig, alias="image-update")
    reap: ReapConfig = Field(default_factory=ReapConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    statsd: StatsdConfig | None = None
    logs: LogsConfig = Field(default_factory=LogsConfig)
    #: Signed upload URLs for jobs' ``swift:`` targets; None: builds get none.
    swift: SwiftConfig | None = None
    insights: InsightsConfig = Field(default_factory=InsightsConfig)
    # The mail server of the layout's smtp reporters (none: a layout with
    # smtp reporters is refused).
    smtp: SmtpConfig | None = None
    # Known failures: one signature per *.yaml (gatekeeper.insights.signatures);
    # default <the site's directory>/failures.
    failures_dir: Path | None = Field(default=None, alias="failures-dir")

    def hold_max(self, label: str) -> int:
        """How many nodes of ``label`` may be held at once."""
        config = next((lb for lb in self.labels if lb.name == label), None)
        if config is not None and config.hold_max is not None:
            return config.hold_max
        return self.pool.hold_max

    def resolve(self, base: Path) -> SiteConfig:
        """Make every path absolute against ``base`` and fill derived defaults."""

        def fix(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        self.layout = fix(self.layout)
        self.state_dir = fix(self.state_dir)
        self.failures_dir = fix(self.failures_dir or Path("failures"))
        if not self.database:
            self.database = f"sqlite:///{self.state_dir / 'gatekeeper.db'}"
        self.log_root = fix(self.log_root) if self.log_root else self.state_dir / "logs"
        if not self.web.url:
            self.web.url = f"http://{self.web.listen.host}:{self.web.listen.port}/"
        if not self.web.url.endswith("/"):
            self.web.url += "/"
        if not self.log_url:
            # The web serves the log root under /logs/: a link in a Gerrit
            # comment opens in a browser (a file:// URL does not).
            self.log_url = self.web.url + "logs/"
        if not self.log_url.endswith("/"):
            self.log_url += "/"
        self.gearman.tls_dir = (
            fix(self.gearman.tls_dir) if self.gearman.tls_dir else self.state_dir / "tls"
        )
        self.admin.secret_file = (
            fix(self.admin.secret_file)
            if self.admin.secret_file
            else self.state_dir / "admin.secret"
        )
        if self.gerrit is not None:
            self.gerrit.key = fix(self.gerrit.key)
            self.gerrit.known_hosts = fix(self.gerrit.known_hosts)
            http = self.gerrit.http
            if http is not None and http.password_file is not None:
                http.password_file = fix(http.password_file)
        if self.swift is not None and self.swift.temp_url_key_file is not None:
            self.swift.temp_url_key_file = fix(self.swift.temp_url_key_file)
        if self.smtp is not None and self.smtp.ca_file is not None:
            self.smtp.ca_file = fix(self.smtp.ca_file)
        if self.reap.hold_failed is not None:
            self.pool.hold_failed_hours = self.reap.hold_failed / 3600
        for provider in self.providers:
            if provider.driver == "local":
                provider.root = fix(provider.root) if provider.root else self.state_dir / "nodes"
            if provider.driver == "openstack":
                provider.root = (
                    fix(provider.root)
                    if provider.root
                    else self.state_dir / "providers" / provider.name
                )
            for image in provider.images:
                image.setup = [fix(p) for p in image.setup]
                if image.private_key is not None:
                    image.private_key = fix(image.private_key)
            for host in provider.hosts:
                host.private_key = fix(host.private_key)
                host.known_hosts = fix(host.known_hosts)
        return self
