"""The calls the ``openstack`` provider makes on a cloud, and the thin
openstacksdk adapter that makes them.

``CloudAPI`` is the narrow seam: eleven calls, plain data in and out, and
only ``CloudError``/``QuotaError`` raised. ``SDKCloud`` implements it on an
``openstack.connection.Connection`` (credentials from ``clouds.yaml``, as
OpenStack users keep them). An in-process fake cloud implements the same
calls for tests and benchmarks; it is chosen by registering it under a cloud
name (``register_cloud``) that a provider's ``cloud:`` then names.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatekeeper.errors import ProviderError

log = logging.getLogger(__name__)


class CloudError(ProviderError):
    """The cloud's API refused or failed a call."""


class QuotaError(CloudError):
    """The cloud refused a server or image for lack of quota."""


@dataclass
class CloudServer:
    """A server as the pool sees it."""

    id: str
    name: str
    # ACTIVE, BUILD, ERROR, DELETED, ... (nova's status words).
    status: str
    address: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    fault: str = ""
    # Where nova placed it ("" until it is scheduled, or if the cloud hides it).
    availability_zone: str = ""


@dataclass
class CloudImage:
    id: str
    name: str
    # queued, saving, active, killed, deleted, ... (glance's status words).
    status: str


@dataclass
class CloudLimits:
    """Instance quota: None when the cloud sets no limit."""

    max_instances: int | None
    used_instances: int

    @property
    def free(self) -> int | None:
        if self.max_instances is None or self.max_instances < 0:
            return None
        return max(0, self.max_instances - self.used_instances)


class CloudAPI(Protocol):
    """What the ``openstack`` provider calls. Thread-safe.

    Every method raises only ``CloudError`` (``QuotaError`` for quota).
    """

    def create_server(
        self, name: str, image: str, flavor: str, networks: list[str], metadata: dict[str, str]
    ) -> CloudServer: ...

    def get_server(self, server_id: str) -> CloudServer | None: ...

    def delete_server(self, server_id: str) -> None: ...

    def list_servers(self) -> list[CloudServer]: ...

    def create_image_snapshot(self, server_id: str, name: str, metadata: dict[str, str]) -> str: ...

    def get_image(self, image_id: str) -> CloudImage | None: ...

    def delete_image(self, image_id: str) -> None: ...

    def find_image(self, name_or_id: str) -> str: ...

    def find_flavor(self, name: str, min_ram: int) -> str: ...

    def find_network(self, name_or_id: str) -> str: ...

    def limits(self) -> CloudLimits: ...


CloudFactory = Callable[[str, str], CloudAPI]

_registry: dict[str, CloudFactory] = {}
_registry_lock = threading.Lock()


def register_cloud(name: str, factory: CloudFactory) -> None:
    """Serve provider ``cloud: <name>`` from ``factory(cloud, region)`` instead
    of clouds.yaml (the in-process fake cloud of tests and benchmarks)."""
    with _registry_lock:
        _registry[name] = factory


def unregister_cloud(name: str) -> None:
    with _registry_lock:
        _registry.pop(name, None)


def open_cloud(cloud: str, region: str) -> CloudAPI:
    """The cloud called ``cloud``: a registered one, else clouds.yaml's.

    :raises CloudError: openstacksdk cannot configure or reach it.
    """
    with _registry_lock:
        factory = _registry.get(cloud)
    if factory is not None:
        return factory(cloud, region)
    import openstack
    from openstack import exceptions

    try:
        conn = openstack.connect(cloud=cloud, region_name=region or None)
    except exceptions.SDKException as exc:
        raise CloudError(f"cloud {cloud}: {exc}") from exc
    return SDKCloud(conn)


class SDKCloud:
    """``CloudAPI`` on openstacksdk. Thread-safe as openstacksdk's Connection is;
    every SDK exception is translated here and nowhere else."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from openstack import exceptions

        try:
            return fn()
        except exceptions.HttpException as exc:
            message = f"{what}: {exc}"
            status = getattr(exc, "status_code", None)
            if status in (403, 413) and "quota" in str(exc).lower():
                raise QuotaError(message) from exc
            raise CloudError(message) from exc
        except exceptions.SDKException as exc:
            raise CloudError(f"{what}: {exc}") from exc

    def _get(self, what: str, fn: Callable[[], Any]) -> Any:
        """What ``fn`` looks up, or None where the cloud has no such thing."""
        from openstack import exceptions

        try:
            return fn()
        except exceptions.NotFoundException:
            return None
        except exceptions.SDKException as exc:
            raise CloudError(f"{what}: {exc}") from exc

    def create_server(
        self, name: str, image: str, flavor: str, networks: list[str], metadata: dict[str, str]
    ) -> CloudServer:
        attrs: dict[str, Any] = {
            "name": name,
            "image_id": image,
            "flavor_id": flavor,
            "metadata": metadata,
        }
        if networks:
            attrs["networks"] = [{"uuid": n} for n in networks]
        server = self._call(
            f"create server {name}", lambda: self.conn.compute.create_server(**attrs)
        )
        return _server(server)

    def get_server(self, server_id: str) -> CloudServer | None:
        server = self._get(
            f"get server {server_id}", lambda: self.conn.compute.get_server(server_id)
        )
        return None if server is None else _server(server)

    def delete_server(self, server_id: str) -> None:
        self._call(
            f"delete server {server_id}",
            lambda: self.conn.compute.delete_server(server_id, ignore_missing=True),
        )

    def list_servers(self) -> list[CloudServer]:
        servers = self._call("list servers", lambda: list(self.conn.compute.servers(details=True)))
        return [_server(s) for s in servers]

    def create_image_snapshot(self, server_id: str, name: str, metadata: dict[str, str]) -> str:
        from openstack.compute.v2.server import Server

        # Server.create_image posts the createImage action and reads the image
        # id from the reply, without the extra image-service round trip that
        # the proxy's create_server_image makes.
        return str(
            self._call(
                f"snapshot server {server_id}",
                lambda: Server.new(id=server_id).create_image(self.conn.compute, name, metadata),
            )
        )

    def get_image(self, image_id: str) -> CloudImage | None:
        image = self._get(f"get image {image_id}", lambda: self.conn.image.get_image(image_id))
        if image is None:
            return None
        return CloudImage(id=image.id, name=image.name or "", status=(image.status or "").lower())

    def delete_image(self, image_id: str) -> None:
        self._call(
            f"delete image {image_id}",
            lambda: self.conn.image.delete_image(image_id, ignore_missing=True),
        )

    def find_image(self, name_or_id: str) -> str:
        image = self._call(
            f"find image {name_or_id}",
            lambda: self.conn.image.find_image(name_or_id, ignore_missing=False),
        )
        return str(image.id)

    def find_flavor(self, name: str, min_ram: int) -> str:
        flavors = self._call("list flavors", lambda: list(self.conn.compute.flavors(details=True)))
        if name:
            for flavor in flavors:
                if name in (flavor.name, flavor.id):
                    return str(flavor.id)
            raise CloudError(f"no flavor named {name!r}")
        fitting = sorted((f for f in flavors if (f.ram or 0) >= min_ram), key=lambda f: f.ram or 0)
        if not fitting:
            raise CloudError(f"no flavor with at least {min_ram} MB of RAM")
        return str(fitting[0].id)

    def find_network(self, name_or_id: str) -> str:
        network = self._call(
            f"find network {name_or_id}",
            lambda: self.conn.network.find_network(name_or_id, ignore_missing=False),
        )
        return str(network.id)

    def limits(self) -> CloudLimits:
        limits = self._call("get limits", lambda: self.conn.compute.get_limits())
        absolute = limits.absolute
        return CloudLimits(
            max_instances=absolute.instances, used_instances=int(absolute.instances_used or 0)
        )


def _server(server: Any) -> CloudServer:
    fault = server.fault or {}
    return CloudServer(
        id=str(server.id),
        name=server.name or "",
        status=(server.status or "").upper(),
        address=_address(server),
        metadata={str(k): str(v) for k, v in (server.metadata or {}).items()},
        fault=str(fault.get("message", "")) if isinstance(fault, dict) else str(fault),
        availability_zone=str(server.availability_zone or ""),
    )


def _address(server: Any) -> str:
    """The address to reach a server on: its access IP, else a floating IPv4,
    else a fixed IPv4, else any address."""
    if server.access_ipv4:
        return str(server.access_ipv4)
    candidates: list[tuple[int, str]] = []
    for entries in (server.addresses or {}).values():
        for entry in entries:
            addr = entry.get("addr")
            if not addr:
                continue
            rank = (0 if entry.get("OS-EXT-IPS:type") == "floating" else 1) + (
                0 if entry.get("version") == 4 else 2
            )
            candidates.append((rank, str(addr)))
    if server.access_ipv6 and not candidates:
        return str(server.access_ipv6)
    return min(candidates)[1] if candidates else ""
