"""Hosts someone else runs, reached over SSH: one node per configured host.

The pool names a static node after its host. "Launching" checks the host is
reachable with its configured host key; "deleting" wipes the build's
directory ``<workdir>/<node name>`` and the pool then offers the host again.
"""

from __future__ import annotations

import logging
import posixpath
import shlex

from gatekeeper.config.site import ProviderConfig, StaticHost
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError, SSHError
from gatekeeper.model.node import LaunchedNode
from gatekeeper.node import ssh
from gatekeeper.node.transport import Transport
from gatekeeper.node.transport_ssh import SSHTransport
from gatekeeper.pool.providers.base import Provider, ReusableHosts

log = logging.getLogger(__name__)


class StaticProvider(Provider, ReusableHosts):
    """The configured SSH hosts. Called from pool launcher threads and
    worker threads; holds only the read-only host list.
    """

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.hosts: dict[str, StaticHost] = {h.name: h for h in config.hosts}

    def fixed_names(self, label: str) -> list[str]:
        return [h.name for h in self.hosts.values() if h.label == label]

    def _host(self, name: str) -> StaticHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise ProviderError(f"static provider {self.name} has no host {name!r}") from None

    def node_root(self, host: StaticHost, node_name: str) -> str:
        """``<workdir>/<node name>``, refusing anything that would leave workdir.

        :raises ProviderError:
        """
        workdir = posixpath.normpath(host.workdir)
        root = posixpath.normpath(posixpath.join(workdir, node_name))
        if (
            not workdir.startswith("/")
            or workdir == "/"
            or posixpath.dirname(root) != workdir
            or "/" in node_name
        ):
            raise ProviderError(f"node {node_name!r} would not be under workdir {host.workdir!r}")
        return root

    def _on_host(self, host: StaticHost, command: str, failure: str) -> None:
        """Run one short command on ``host``.

        :raises ProviderError: ``failure``, then why.
        """
        try:
            client = ssh.connect(
                host.host,
                host.port,
                host.username,
                host.private_key,
                known_hosts=host.known_hosts,
            )
            try:
                ssh.run(client, command)
            finally:
                client.close()
        except SSHError as exc:
            raise ProviderError(f"{failure}: {exc}") from exc

    def launch(self, node_name: str, label: str, image: str = "") -> LaunchedNode:
        host = self._host(node_name)
        if host.label != label:
            raise ProviderError(f"host {host.name} has label {host.label}, not {label}")
        root = self.node_root(host, node_name)
        self._on_host(
            host, f"mkdir -p -- {shlex.quote(root)}", f"static host {host.name} is not usable"
        )
        return LaunchedNode(
            external_id=host.name, address=host.host, port=host.port, username=host.username
        )

    def delete(self, node: Node) -> None:
        host = self._host(node.name)
        root = self.node_root(host, node.name)
        self._on_host(
            host, f"rm -rf -- {shlex.quote(root)}", f"cannot clean static host {host.name}"
        )

    def list(self) -> list[str]:
        return sorted(self.hosts)

    def transport(self, node: Node) -> Transport:
        host = self._host(node.name)
        return SSHTransport(
            host=host.host,
            port=host.port,
            username=host.username,
            private_key=host.private_key,
            known_hosts=host.known_hosts,
            root=self.node_root(host, node.name),
        )
