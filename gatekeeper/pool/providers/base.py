"""The provider seam: how the pool gets, lists and gives back machines.

Every driver is a :class:`Provider`: it launches, deletes and lists nodes,
and says how a worker reaches one (``transport``). What only some drivers
can do is a capability, a ``runtime_checkable`` Protocol that the pool, the
reaper and the CLI test with ``isinstance`` before they ask for it:

- :class:`ReusableHosts`: hosts it does not own, cleaned and re-used
  instead of deleted (``static``);
- :class:`Reapable`: what it holds, with whose it is, for the reaper's
  leak check (``local``, ``openstack``);
- :class:`BuildsImages`: daily images, built, deleted and looked up
  (``local``, ``openstack``);
- :class:`TakesKeys`: a developer's SSH key on a held node (``openstack``);
- :class:`HasQuota`: a quota of its own besides max-servers (``openstack``);
- :class:`Stoppable`: running launches and builds that give up when the
  pool stops (``openstack``);
- :class:`HoldsLaunches`: queued launches that fail fast while the pool
  backs the provider off (``openstack``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError
from gatekeeper.model.node import LaunchedNode
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
        """Destroy (or, for reusable hosts, clean) the node. Idempotent.

        :raises ProviderError: the provider refused.
        """

    @abstractmethod
    def list(self) -> list[str]:
        """External ids of every node this provider has."""

    @abstractmethod
    def transport(self, node: Node) -> Transport:
        """How a worker reaches the node: copy in, run, copy back."""

    def exists(self, node: Node) -> bool:
        """Whether the node's machine is still there (a delete is trusted
        only once this says no).

        :raises ProviderError: the provider could not tell.
        """
        return bool(node.external_id) and node.external_id in self.list()

    def serves(self, label: str) -> bool:
        """Whether this provider can launch nodes of ``label`` at all (the
        pool places a label only on the providers that can)."""
        return True


@runtime_checkable
class ReusableHosts(Protocol):
    """Hands out hosts it does not own: the pool names their nodes after
    them, and a node given back is cleaned (``delete``) and offered again as
    READY instead of being deleted. Such hosts are never reaped as leaks."""

    def fixed_names(self, label: str) -> list[str]:
        """The only node names this provider can launch for ``label``."""
        ...


@runtime_checkable
class Reapable(Protocol):
    """Tags what it makes for this pool, so the reaper can find what no
    database row accounts for (leaks) and delete it."""

    def list_tagged(self) -> list[Tagged]:
        """What this provider holds for this pool, with whose it is.

        :raises ProviderError:
        """
        ...

    def delete_external(self, external_id: str) -> None:
        """Delete something ``list_tagged`` reported that has no node row.

        :raises ProviderError:
        """
        ...


@runtime_checkable
class BuildsImages(Protocol):
    """Makes a label's image (daily) for new nodes to boot from."""

    def builds_images(self, label: str) -> bool:
        """Whether this provider makes a daily image for ``label``."""
        ...

    def build_image(self, label: str, image_name: str, progress: Progress) -> str:
        """Make a new image of ``label`` called ``image_name``; return its
        external id once it can be booted from.

        :raises ProviderError: the build failed (nothing is left behind).
        """
        ...

    def delete_image(self, external_id: str) -> None:
        """Delete an image. Idempotent.

        :raises ProviderError:
        """
        ...

    def image_exists(self, external_id: str) -> bool:
        """Whether an image is still there.

        :raises ProviderError:
        """
        ...


@runtime_checkable
class TakesKeys(Protocol):
    """Its nodes can let a developer in (a held node, to look at)."""

    def install_key(self, node: Node, public_key: str) -> None:
        """Let the holder of ``public_key`` log in to the node.

        :raises ProviderError:
        """
        ...


@runtime_checkable
class HasQuota(Protocol):
    """Has a quota of its own (a cloud's), besides ``max-servers``."""

    def quota_free(self) -> int | None:
        """How many more nodes the quota allows (None: no limit known).
        Asked once per pool round.

        :raises ProviderError:
        """
        ...


@runtime_checkable
class Stoppable(Protocol):
    """Has launches and image builds running that can be told to give up."""

    def stop(self) -> None:
        """Make running launches and image builds give up soon (the pool is stopping)."""
        ...

    def resume(self) -> None:
        """Undo ``stop`` (the pool is starting again)."""
        ...


@runtime_checkable
class HoldsLaunches(Protocol):
    """Queues launches of its own, which can fail fast while backed off."""

    def hold_launches(self, seconds: float) -> None:
        """The pool has backed this provider off for ``seconds`` (0: no more):
        launches already queued here should fail fast instead of spending the
        API rate on retries."""
        ...


def key_taker(provider: Provider) -> TakesKeys:
    """``provider``, if its nodes can take a developer's SSH key.

    :raises ProviderError: they cannot.
    """
    if not isinstance(provider, TakesKeys):
        raise ProviderError(
            f"provider {provider.name}: nodes of the {provider.config.driver} driver "
            "take no SSH keys"
        )
    return provider


def image_builder(provider: Provider) -> BuildsImages:
    """``provider``, if it builds images.

    :raises ProviderError: it does not.
    """
    if not isinstance(provider, BuildsImages):
        raise ProviderError(f"provider {provider.name} does not build images")
    return provider
