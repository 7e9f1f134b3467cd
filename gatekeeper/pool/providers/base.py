"""The provider seam: how the pool gets, lists and gives back machines."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError
from gatekeeper.node.transport import Transport

#: Where an image build reports what it is doing (one line at a time).
Progress = Callable[[str], None]


def public_key_line(text: str) -> str:
    """The one line of a public key file, for an authorized_keys file.

    :raises ProviderError: it is empty or more than one line (a second line
        would be a second key, or worse, in the node's authorized_keys).
    """
    lines = text.strip().splitlines()
    if len(lines) != 1:
        raise ProviderError("a public key file must be one key line")
    return lines[0]


@dataclass
class LaunchedNode:
    """What a provider reports about a machine it has made ready."""

    external_id: str
    address: str = ""
    port: int = 22
    username: str = ""
    # known_hosts lines for the node, as seen when it first answered.
    host_keys: str = ""


@dataclass(frozen=True)
class Tagged:
    """Something a provider holds that says whose it is: a node (``node`` is
    its name) or an image build's template (``image`` is the image's name)."""

    external_id: str
    node: str = ""
    image: str = ""


class Provider(ABC):
    """A source of nodes. Called from pool launcher threads and workers.

    Implementations must be safe to call from several threads at once.
    """

    #: A static provider hands back hosts it does not own: it re-uses them
    #: (clean, then READY) instead of deleting them.
    reusable_nodes = False
    #: Its nodes can take a developer's SSH key (``install_key``).
    takes_keys = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name

    @abstractmethod
    def launch(self, node_name: str, label: str, image: str = "") -> LaunchedNode:
        """Boot a node of ``label`` from ``image`` (an image's external id; ""
        for the provider's base image); return once it is reachable.

        :raises ProviderError: the node could not be made ready.
        """

    @abstractmethod
    def delete(self, node: Node) -> None:
        """Destroy (or, for reusable nodes, clean) the node. Idempotent.

        :raises ProviderError: the provider refused.
        """

    def serves(self, label: str) -> bool:
        """Whether this provider can launch nodes of ``label`` at all (the
        pool places a label only on the providers that can)."""
        return True

    def fixed_names(self, label: str) -> list[str] | None:
        """The only node names this provider can launch for ``label`` (a static
        provider's hosts), or None when the pool may name nodes freely."""
        return None

    @abstractmethod
    def list(self) -> list[str]:
        """External ids of every node this provider has (for leak detection)."""

    def exists(self, node: Node) -> bool:
        """Whether the node's machine is still there (a delete is trusted
        only once this says no).

        :raises ProviderError: the provider could not tell.
        """
        return bool(node.external_id) and node.external_id in self.list()

    def list_tagged(self) -> builtins.list[Tagged]:
        """What this provider holds for this pool, with whose it is; the reaper
        deletes what no database row accounts for. Reusable providers hold
        nothing of their own and return nothing.

        :raises ProviderError:
        """
        return []

    def delete_external(self, external_id: str) -> None:
        """Delete something ``list_tagged`` reported that has no node row.

        :raises ProviderError:
        """
        raise ProviderError(f"provider {self.name} cannot delete {external_id}")

    def install_key(self, node: Node, public_key: str) -> None:
        """Let the holder of ``public_key`` log in to the node (a held node,
        for a developer to look at).

        :raises ProviderError: this provider's nodes cannot take keys.
        """
        self.check_takes_keys()
        raise NotImplementedError(f"{type(self).__name__} takes keys but cannot install them")

    def check_takes_keys(self) -> None:
        """:raises ProviderError: this provider's nodes cannot take keys."""
        if not self.takes_keys:
            raise ProviderError(
                f"provider {self.name}: nodes of the {self.config.driver} driver take no SSH keys"
            )

    def hold_launches(self, seconds: float) -> None:  # noqa: B027 - optional hook
        """The pool has backed this provider off for ``seconds`` (0: no more):
        launches already queued here should fail fast instead of spending the
        API rate on retries."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Make running launches and image builds give up soon (the pool is stopping)."""

    def resume(self) -> None:  # noqa: B027 - optional hook
        """Undo ``stop`` (the pool is starting again)."""

    def quota_free(self) -> int | None:
        """How many more nodes the provider's own quota allows (None: no limit
        known). Asked once per pool round.

        :raises ProviderError:
        """
        return None

    # -- images ------------------------------------------------------------

    def builds_images(self, label: str) -> bool:
        """Whether this provider makes a daily image for ``label``."""
        return False

    def build_image(self, label: str, image_name: str, progress: Progress) -> str:
        """Make a new image of ``label`` called ``image_name``; return its
        external id once it can be booted from.

        :raises ProviderError: the build failed (nothing is left behind).
        """
        raise ProviderError(f"provider {self.name} does not build images")

    def delete_image(self, external_id: str) -> None:
        """Delete an image. Idempotent.

        :raises ProviderError:
        """
        raise ProviderError(f"provider {self.name} does not build images")

    def image_exists(self, external_id: str) -> bool:
        """Whether an image is still there.

        :raises ProviderError:
        """
        return False

    @abstractmethod
    def transport(self, node: Node) -> Transport:
        """How a worker reaches the node: copy in, run, copy back."""
