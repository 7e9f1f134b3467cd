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

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class GerritConfig(_Strict):
    """How to reach Gerrit over SSH."""

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


class ProviderConfig(_Strict):
    name: str
    driver: Literal["local", "static"] = "local"
    max_servers: int = Field(default=4, alias="max-servers", ge=0)
    # local: the root under which nodes and images live (default state/nodes).
    root: Path | None = None
    # static: the hosts.
    hosts: list[StaticHost] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hosts_only_for_static(self) -> ProviderConfig:
        if self.driver != "static" and self.hosts:
            raise ValueError("'hosts' is only for the static driver")
        if self.driver == "static" and not self.hosts:
            raise ValueError("a static provider needs at least one entry in 'hosts'")
        return self


class LabelConfig(_Strict):
    name: str
    min_ready: int = Field(default=1, alias="min-ready", ge=0)
    providers: list[str] = Field(default_factory=list)


class PoolConfig(_Strict):
    interval: float = 1.0
    hold_failed_hours: float = Field(default=24.0, alias="hold-failed-hours", ge=0)


class WorkerConfig(_Strict):
    count: int = Field(default=2, ge=1)
    # How long a worker waits for a node before the build is NODE_FAILURE.
    node_wait: float = Field(default=600.0, alias="node-wait")


class SiteConfig(_Strict):
    """The whole site file. Only ``gerrit`` is required for ``gatekeeper run``."""

    gerrit: GerritConfig | None = None
    layout: Path = Path("layout.yaml")
    state_dir: Path = Field(default=Path("state"), alias="state-dir")
    database: str = ""
    log_root: Path | None = Field(default=None, alias="log-root")
    log_url: str = Field(default="", alias="log-url")
    gearman: GearmanConfig = Field(default_factory=GearmanConfig)
    providers: list[ProviderConfig] = Field(
        default_factory=lambda: [ProviderConfig(name="local", driver="local")]
    )
    labels: list[LabelConfig] = Field(default_factory=list)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)

    def resolve(self, base: Path) -> SiteConfig:
        """Make every path absolute against ``base`` and fill derived defaults."""

        def fix(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        self.layout = fix(self.layout)
        self.state_dir = fix(self.state_dir)
        if not self.database:
            self.database = f"sqlite:///{self.state_dir / 'gatekeeper.db'}"
        self.log_root = fix(self.log_root) if self.log_root else self.state_dir / "logs"
        if not self.log_url:
            self.log_url = self.log_root.as_uri() + "/"
        if not self.log_url.endswith("/"):
            self.log_url += "/"
        if self.gerrit is not None:
            self.gerrit.key = fix(self.gerrit.key)
            self.gerrit.known_hosts = fix(self.gerrit.known_hosts)
        for provider in self.providers:
            if provider.driver == "local":
                provider.root = fix(provider.root) if provider.root else self.state_dir / "nodes"
            for host in provider.hosts:
                host.private_key = fix(host.private_key)
                host.known_hosts = fix(host.known_hosts)
        return self
