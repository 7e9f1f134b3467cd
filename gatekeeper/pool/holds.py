"""Holding a node for a person and releasing it: what ``gatekeeper nodes
hold``/``release`` and the web's node actions both do, so the two cannot
drift apart."""

from __future__ import annotations

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import Node
from gatekeeper.errors import GatekeeperError
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.base import key_taker

__all__ = ["hold_node", "release_node"]


def hold_node(
    site: SiteConfig,
    store: NodeStore,
    ident: str,
    seconds: float | None,
    reason: str,
    key: str | None = None,
) -> Node:
    """Hold node ``ident`` (number or name) for ``seconds`` (None: until
    released), installing ``key`` (one ``authorized_keys`` line, see
    :func:`~gatekeeper.pool.providers.base.public_key_line`) if given.

    :raises GatekeeperError: no such node, it cannot be held, its provider
        is not in the site file or takes no keys (then nothing is held), or
        the key could not be installed (then it is held, and the message says so).
    """
    node = store.find(ident)
    provider = None
    if key is not None:
        config = next((p for p in site.providers if p.name == node.provider), None)
        if config is None:
            raise GatekeeperError(f"provider {node.provider} is not in the site file")
        provider = key_taker(make_provider(config, site.pool.name))
    held = store.hold(node.name, seconds, reason)
    if provider is not None and key is not None:
        try:
            provider.install_key(held, key)
        except GatekeeperError as exc:
            raise GatekeeperError(
                f"node {held.id} ({held.name}) is held, but the key is not installed: {exc}"
            ) from exc
    return held


def release_node(store: NodeStore, ident: str) -> Node:
    """End the hold on node ``ident``: the pool deletes it.

    :raises GatekeeperError: no such node, or it is not held.
    """
    node = store.find(ident)
    store.release_hold(node.name)
    return node
