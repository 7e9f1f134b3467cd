"""Nodes that are servers in an OpenStack cloud, through openstacksdk.

Every server the pool makes is tagged with metadata naming the pool, the
provider and the node (or the image being built), so the reaper can tell
its own servers from anyone else's and find the ones no row accounts for.
A launch boots the label's current image (or its base image), waits for
ACTIVE and then for SSH within ``boot-timeout``, and deletes and retries a
server that goes to ERROR, times out or never answers, up to
``launch-retries`` times. Every API call waits its turn under ``rate``.
"""

from __future__ import annotations

import builtins
import logging
import re
import shlex
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import paramiko

from gatekeeper.config.site import ProviderConfig, ProviderImage
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError
from gatekeeper.kit import image_kit_program
from gatekeeper.model.node import LaunchedNode
from gatekeeper.model.outside import shown
from gatekeeper.node import ssh
from gatekeeper.node.transport import Transport
from gatekeeper.node.transport_ssh import SSHTransport
from gatekeeper.pool.providers import ssh_ready
from gatekeeper.pool.providers.base import (
    BuildsImages,
    HasQuota,
    HoldsLaunches,
    Progress,
    Provider,
    Reapable,
    Stoppable,
    Tagged,
    TakesKeys,
    public_key_line,
)
from gatekeeper.pool.providers.cloud import CloudAPI, CloudServer, QuotaError, open_cloud

log = logging.getLogger(__name__)

META_POOL = "gatekeeper-pool"
META_PROVIDER = "gatekeeper-provider"
META_NODE = "gatekeeper-node"
META_LABEL = "gatekeeper-label"
META_IMAGE_BUILD = "gatekeeper-image-build"

# Failed attempts in a row after which a launch is not retried here.
FAILING_AFTER = 3
# Seconds the cloud's quota answer is trusted.
QUOTA_CACHE = 10.0
# Where a build's workspace lives on a cloud node.
WORKDIR = "/var/tmp/gatekeeper"
# A command run over SSH on a server (a setup script) may go quiet this long.
SSH_COMMAND_TIMEOUT = 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class RateLimiter:
    """At most ``rate`` calls per second, shared by every thread of a provider."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._next = 0.0
        self._waiter = threading.Event()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            # Never set: a plain bounded wait that does not trip "no sleep" rules.
            self._waiter.wait(delay)


class OpenStackProvider(
    Provider, Reapable, BuildsImages, TakesKeys, HasQuota, Stoppable, HoldsLaunches
):
    """Servers in one cloud region. Called from pool launcher threads, the
    pool thread (deletes, reaping, quota), image-build threads and worker
    threads (transport); the cloud connection is opened once, lazily, and
    openstacksdk's Connection is shared between them.
    """

    def __init__(self, config: ProviderConfig, pool_name: str = "gatekeeper") -> None:
        super().__init__(config)
        self.pool_name = pool_name
        self.limiter = RateLimiter(config.rate)
        self.poll_interval = config.poll_interval
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._cloud: CloudAPI | None = None
        # Looked-up ids, or the lookup one thread is making for the others.
        self._ids: dict[tuple[str, str], Future[str]] = {}
        self._list_lock = threading.Lock()
        self._list: dict[str, CloudServer] = {}
        self._list_time = 0.0
        self._quota: tuple[float, int | None] | None = None
        self._held_until = 0.0
        # Launch attempts that failed in a row, across all launches.
        self._failed_attempts = 0
        self.root = Path(config.root) if config.root else None

    # -- plumbing ----------------------------------------------------------

    @property
    def cloud(self) -> CloudAPI:
        with self._lock:
            if self._cloud is None:
                self._cloud = open_cloud(self.config.cloud, self.config.region)
            return self._cloud

    def stop(self) -> None:
        """Make running launches and builds give up (the pool is stopping)."""
        self.stopping.set()

    def resume(self) -> None:
        self.stopping.clear()

    def hold_launches(self, seconds: float) -> None:
        with self._lock:
            self._held_until = time.monotonic() + seconds if seconds > 0 else 0.0

    def _lookup(self, kind: str, key: str) -> str:
        """Image, flavor and network ids: looked up once per provider.

        A hundred launches start at once and all miss the cache: the first
        asks the cloud and the others wait for its answer (or its error), so
        the lookups do not spend the rate limit the creates need. A failed
        lookup is forgotten: the next launch asks again.
        """
        with self._lock:
            pending = self._ids.get((kind, key))
            asking = pending is None
            if pending is None:
                pending = self._ids[(kind, key)] = Future()
        if not asking:
            return pending.result()
        try:
            if self.stopping.is_set():
                raise ProviderError(f"provider {self.name}: the pool is stopping")
            self.limiter.wait()
            if kind == "image":
                found = self.cloud.find_image(key)
            elif kind == "flavor":
                found = self.cloud.find_flavor(self.config.flavor_name, self.config.min_ram)
            else:
                found = self.cloud.find_network(key)
        except BaseException as exc:
            with self._lock:
                self._ids.pop((kind, key), None)
            pending.set_exception(exc)
            raise
        pending.set_result(found)
        return found

    def _image_config(self, label: str) -> ProviderImage:
        image = self.config.image(label)
        if image is None:
            raise ProviderError(f"provider {self.name} has no 'images' entry for label {label}")
        return image

    def _tags(self, **extra: str) -> dict[str, str]:
        return {META_POOL: self.pool_name, META_PROVIDER: self.name, **extra}

    def _ours(self, server: CloudServer) -> bool:
        meta = server.metadata
        return meta.get(META_POOL) == self.pool_name and meta.get(META_PROVIDER) == self.name

    # -- nodes -------------------------------------------------------------

    def serves(self, label: str) -> bool:
        # A label needs an 'images' entry: what to boot, and who logs in.
        return self.config.image(label) is not None

    def launch(self, node_name: str, label: str, image: str = "") -> LaunchedNode:
        settings = self._image_config(label)
        image_id = image or self._lookup("image", settings.base_image)
        metadata = {**settings.metadata, **self._tags(**{META_NODE: node_name, META_LABEL: label})}
        errors: list[str] = []
        for attempt in range(1, self.config.launch_retries + 1):
            if self.stopping.is_set():
                break
            with self._lock:
                held = time.monotonic() < self._held_until
                # Retrying is for a server that was unlucky, not for a cloud
                # that fails everything: then the pool's backoff decides.
                failing = attempt > 1 and self._failed_attempts >= FAILING_AFTER
            if held or failing:
                errors.append(f"{self.name} is failing every launch: no retry")
                break
            try:
                server = self._boot(node_name, image_id, metadata)
            except QuotaError:
                self.forget_quota()
                raise
            except ProviderError as exc:
                errors.append(str(exc))
                log.warning("node %s: attempt %d on %s: %s", node_name, attempt, self.name, exc)
                self._attempt(ok=False)
                continue
            try:
                host_keys = self._wait_ready(server, settings)
            except ProviderError as exc:
                errors.append(str(exc))
                log.warning("node %s: attempt %d on %s: %s", node_name, attempt, self.name, exc)
                self._delete_quietly(server.id)
                self._attempt(ok=False)
                continue
            self._attempt(ok=True)
            return LaunchedNode(
                external_id=server.id,
                address=server.address,
                port=self.config.ssh_port,
                username=settings.username,
                host_keys=host_keys,
                region=self.config.region,
                availability_zone=server.availability_zone,
            )
        raise ProviderError(
            f"node {node_name}: no usable server on {self.name} after "
            f"{len(errors)} attempt(s): {errors[-1] if errors else 'stopped'}"
        )

    def _attempt(self, ok: bool) -> None:
        with self._lock:
            self._failed_attempts = 0 if ok else self._failed_attempts + 1

    def _boot(self, name: str, image_id: str, metadata: dict[str, str]) -> CloudServer:
        """Create a server and wait for ACTIVE; a server that does not get
        there is deleted before this raises."""
        flavor = self._lookup("flavor", "")
        networks = [self._lookup("network", n) for n in self.config.networks]
        self.limiter.wait()
        server = self.cloud.create_server(name, image_id, flavor, networks, metadata)
        with self._lock:
            # The cached quota answer no longer counts this server: count it.
            if self._quota is not None and self._quota[1] is not None:
                self._quota = (self._quota[0], max(0, self._quota[1] - 1))
        deadline = time.monotonic() + self.config.boot_timeout
        try:
            return self._wait_active(server.id, deadline)
        except ProviderError:
            self._delete_quietly(server.id)
            raise

    def _wait_active(self, server_id: str, deadline: float) -> CloudServer:
        created = time.monotonic()
        while not self.stopping.is_set():
            server = self._listed(server_id, created)
            if server is None:
                raise ProviderError(f"server {server_id} vanished while booting")
            if server.status == "ACTIVE":
                return server
            if server.status == "ERROR":
                raise ProviderError(f"server {server_id} went to ERROR: {server.fault}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(
                    f"server {server_id} not ACTIVE within {self.config.boot_timeout:.0f}s "
                    f"(status {server.status})"
                )
            self.stopping.wait(min(self.poll_interval, remaining))
        raise ProviderError(f"server {server_id}: the pool is stopping")

    def _listed(self, server_id: str, newer_than: float) -> CloudServer | None:
        """The server as the newest server list shows it. Every booting
        server is watched through one shared list, fetched at most once per
        poll interval, so a hundred boots cost one call per interval and not
        a hundred (the rate limit is for launching)."""
        with self._list_lock:
            now = time.monotonic()
            if self._list_time <= newer_than or now - self._list_time >= self.poll_interval:
                self.limiter.wait()
                listed_at = time.monotonic()
                self._list = {s.id: s for s in self.cloud.list_servers()}
                self._list_time = listed_at
            return self._list.get(server_id)

    def _wait_ready(self, server: CloudServer, settings: ProviderImage) -> str:
        if not server.address:
            raise ProviderError(f"server {server.id} has no address")
        deadline = time.monotonic() + self.config.boot_timeout
        host_keys = ssh_ready.wait_for_ssh(
            server.address,
            self.config.ssh_port,
            deadline,
            self.stopping,
            settings.username,
            settings.private_key,
            interval=self.poll_interval,
        )
        return host_keys

    def _delete_quietly(self, server_id: str) -> None:
        try:
            self.limiter.wait()
            self.cloud.delete_server(server_id)
        except ProviderError as exc:
            # The reaper finds it by its metadata later.
            log.warning("server %s on %s: delete failed: %s", server_id, self.name, exc)

    def _servers_of(self, node_name: str) -> list[CloudServer]:
        self.limiter.wait()
        return [
            s
            for s in self.cloud.list_servers()
            if self._ours(s) and s.metadata.get(META_NODE) == node_name
        ]

    def delete(self, node: Node) -> None:
        if node.external_id:
            ids = [node.external_id]
        else:
            # A launch that crashed before recording its server: find it by tag.
            ids = [s.id for s in self._servers_of(node.name)]
        for server_id in ids:
            self.limiter.wait()
            self.cloud.delete_server(server_id)

    def exists(self, node: Node) -> bool:
        if not node.external_id:
            return any(s.status != "DELETED" for s in self._servers_of(node.name))
        self.limiter.wait()
        server = self.cloud.get_server(node.external_id)
        return server is not None and server.status != "DELETED"

    def list(self) -> list[str]:
        return sorted(t.external_id for t in self.list_tagged())

    def list_tagged(self) -> builtins.list[Tagged]:
        self.limiter.wait()
        return [
            Tagged(
                external_id=s.id,
                node=s.metadata.get(META_NODE, ""),
                image=s.metadata.get(META_IMAGE_BUILD, ""),
            )
            for s in self.cloud.list_servers()
            if self._ours(s) and s.status != "DELETED"
        ]

    def delete_external(self, external_id: str) -> None:
        self.limiter.wait()
        self.cloud.delete_server(external_id)

    def quota_free(self) -> int | None:
        # Asked every pool round; the cloud's answer is kept for a few
        # seconds, less the servers made since. (Deletes are not added back:
        # that waits for the next answer.)
        now = time.monotonic()
        with self._lock:
            cached = self._quota
        if cached is not None and now - cached[0] < QUOTA_CACHE:
            return cached[1]
        self.limiter.wait()
        free = self.cloud.limits().free
        with self._lock:
            self._quota = (now, free)
        return free

    def forget_quota(self) -> None:
        """Ask the cloud again next time (it refused a launch for quota)."""
        with self._lock:
            self._quota = None

    def transport(self, node: Node) -> Transport:
        settings = self._image_config(node.label)
        if settings.private_key is None:
            raise ProviderError(f"provider {self.name}: no private-key for label {node.label}")
        return SSHTransport(
            host=node.address,
            port=node.port,
            username=node.username,
            private_key=settings.private_key,
            known_hosts=self.known_hosts_file(node),
            root=f"{WORKDIR}/{_SAFE.sub('_', node.name)}",
        )

    def install_key(self, node: Node, public_key: str) -> None:
        settings = self._image_config(node.label)
        if settings.private_key is None:
            raise ProviderError(f"provider {self.name}: no private-key for label {node.label}")
        key_line = public_key_line(public_key)
        keys = paramiko.HostKeys(str(self.known_hosts_file(node)))
        entry = keys.lookup(ssh.host_entry(node.address, node.port))
        if not entry:
            raise ProviderError(f"node {node.name}: no host key recorded for {node.address}")
        with ssh_ready.provider_errors():
            client = ssh.connect(
                node.address,
                node.port,
                node.username,
                settings.private_key,
                host_keys=entry.values(),
                timeout=30.0,
            )
            try:
                # A last line without its newline (an image's key written with
                # printf or echo -n) would run into the new key and spoil both.
                ssh.run(
                    client,
                    "umask 077 && mkdir -p ~/.ssh && cd ~/.ssh && { if [ -s authorized_keys ]"
                    ' && [ -n "$(tail -c 1 authorized_keys)" ]; then echo; fi; cat; }'
                    " >> authorized_keys",
                    stdin=(key_line + "\n").encode(),
                    timeout=SSH_COMMAND_TIMEOUT,
                )
            finally:
                client.close()

    def known_hosts_file(self, node: Node) -> Path:
        """A known_hosts file holding the host key the node showed at boot.

        :raises ProviderError: none was recorded.
        """
        if not node.host_keys:
            raise ProviderError(f"node {node.name}: no host key recorded")
        if self.root is None:
            raise ProviderError(f"provider {self.name} has no root directory")
        path = self.root / "known_hosts" / _SAFE.sub("_", node.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node.host_keys.rstrip("\n") + "\n")
        return path

    # -- images ------------------------------------------------------------

    def builds_images(self, label: str) -> bool:
        # Without setup scripts an image would only copy the base: boot that.
        settings = self.config.image(label)
        return settings is not None and settings.builds

    def build_image(self, label: str, image_name: str, progress: Progress) -> str:
        settings = self._image_config(label)
        if settings.private_key is None:
            raise ProviderError(f"image {image_name}: no private-key to run setup with")
        template = f"{image_name}-template"
        metadata = {**settings.metadata, **self._tags(**{META_IMAGE_BUILD: image_name})}
        progress(f"booting {template} from {settings.base_image}")
        base = self._lookup("image", settings.base_image)
        server: CloudServer | None = None
        try:
            server = self._boot(template, base, metadata)
            progress(f"{template} ACTIVE at {server.address}; waiting for SSH")
            host_key_line = self._wait_ready(server, settings)
            self._run_setup(server, settings, host_key_line, progress)
            progress("snapshotting")
            self.limiter.wait()
            image_id = self.cloud.create_image_snapshot(server.id, image_name, metadata)
            self._wait_image(image_id, progress)
            progress(f"image {image_name} is {image_id}")
            return image_id
        finally:
            if server is not None:
                progress(f"deleting {template}")
                self._delete_quietly(server.id)

    def _run_setup(
        self, server: CloudServer, settings: ProviderImage, host_key_line: str, progress: Progress
    ) -> None:
        assert settings.private_key is not None
        port = self.config.ssh_port
        with ssh_ready.provider_errors():
            key = ssh.scan_host_key(server.address, port, ssh_ready.ATTEMPT_TIMEOUT)
            if ssh.known_hosts_line(server.address, port, key) != host_key_line:
                raise ProviderError(f"server {server.id} changed its host key during setup")
            client = ssh.connect(
                server.address,
                port,
                settings.username,
                settings.private_key,
                host_keys=[key],
                timeout=30.0,
            )
            try:
                if settings.kit is not None:
                    kit = settings.kit
                    progress("running the devstack image kit")
                    program = image_kit_program(kit.projects, kit.git_url, kit.root)
                    output = ssh.run(client, "bash -s", stdin=program, timeout=SSH_COMMAND_TIMEOUT)
                    for line in output.splitlines():
                        if line.startswith("image kit: "):
                            progress(shown(line, 1000))
                for script in settings.setup:
                    progress(f"running {script.name}")
                    try:
                        body = script.read_bytes()
                    except OSError as exc:
                        raise ProviderError(f"setup script {script}: {exc}") from exc
                    ssh.run(client, "bash -s", stdin=body, timeout=SSH_COMMAND_TIMEOUT)
                ssh.run(client, "sync", timeout=SSH_COMMAND_TIMEOUT)
                ssh.run(client, f"mkdir -p {shlex.quote(WORKDIR)}", timeout=SSH_COMMAND_TIMEOUT)
            finally:
                client.close()

    def _wait_image(self, image_id: str, progress: Progress) -> None:
        deadline = time.monotonic() + self.config.launch_timeout
        while not self.stopping.is_set():
            self.limiter.wait()
            image = self.cloud.get_image(image_id)
            if image is None:
                raise ProviderError(f"snapshot {image_id} vanished")
            if image.status == "active":
                return
            if image.status in ("killed", "deleted", "error"):
                raise ProviderError(f"snapshot {image_id} is {image.status}")
            if time.monotonic() >= deadline:
                self._delete_image_quietly(image_id)
                raise ProviderError(f"snapshot {image_id} still {image.status}: gave up")
            progress(f"snapshot {image.status}")
            self.stopping.wait(self.poll_interval)
        self._delete_image_quietly(image_id)
        raise ProviderError(f"snapshot {image_id}: the pool is stopping")

    def _delete_image_quietly(self, image_id: str) -> None:
        try:
            self.delete_image(image_id)
        except ProviderError as exc:
            log.warning("image %s on %s: delete failed: %s", image_id, self.name, exc)

    def delete_image(self, external_id: str) -> None:
        self.limiter.wait()
        self.cloud.delete_image(external_id)

    def image_exists(self, external_id: str) -> bool:
        self.limiter.wait()
        image = self.cloud.get_image(external_id)
        return image is not None and image.status not in ("deleted", "killed")
