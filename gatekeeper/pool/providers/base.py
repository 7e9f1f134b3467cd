"""The provider seam: how the pool gets, lists and gives back machines."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.worker.transport import Transport


@dataclass
class LaunchedNode:
    """What a provider reports about a machine it has made ready."""

    external_id: str
    address: str = ""
    port: int = 22
    username: str = ""


class Provider(ABC):
    """A source of nodes. Called from pool launcher threads and workers.

    Implementations must be safe to call from several threads at once.
    """

    #: A static provider hands back hosts it does not own: it re-uses them
    #: (clean, then READY) instead of deleting them.
    reusable_nodes = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name

    @abstractmethod
    def launch(self, node_name: str, label: str) -> LaunchedNode:
        """Boot a node of ``label``; return once it is reachable.

        :raises ProviderError: the node could not be made ready.
        """

    @abstractmethod
    def delete(self, node: Node) -> None:
        """Destroy (or, for reusable nodes, clean) the node. Idempotent.

        :raises ProviderError: the provider refused.
        """

    def fixed_names(self, label: str) -> list[str] | None:
        """The only node names this provider can launch for ``label`` (a static
        provider's hosts), or None when the pool may name nodes freely."""
        return None

    @abstractmethod
    def list(self) -> list[str]:
        """External ids of every node this provider has (for leak detection)."""

    @abstractmethod
    def transport(self, node: Node) -> Transport:
        """How a worker reaches the node: copy in, run, copy back."""
