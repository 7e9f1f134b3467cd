"""The pool as people read it: rows of nodes, images and labels, as
``gatekeeper nodes list``, ``images list``, ``pool status`` and the web's
pages show them. Plain rows, no formatting beyond words: the CLI makes a
terminal table of them, the web an HTML table or Nodepool's JSON.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import OCCUPYING, NodeStore
from gatekeeper.model.node import ImageState, NodeState


def age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


@dataclass(frozen=True)
class NodeRow:
    id: int
    name: str
    label: str
    provider: str
    state: str
    #: Seconds since the node was made.
    age: float
    address: str
    port: int
    external_id: str
    build_uuid: str
    comment: str
    #: For a HOLD: ``failed build`` (the hold cap may release it) or ``operator``.
    held_by: str
    #: When the hold ends (epoch), None while it lasts until released.
    hold_until: float | None

    @property
    def state_text(self) -> str:
        """``HOLD operator (3h05m left)``: the state and, held, by whom and how long."""
        if self.state != NodeState.HOLD:
            return self.state
        left = f"{age(self.hold_until - time.time())} left" if self.hold_until else "∞"
        return f"{self.state} {self.held_by} ({left})"

    @property
    def where(self) -> str:
        return self.address + (f":{self.port}" if self.address and self.port != 22 else "")


def node_rows(
    store: NodeStore,
    label: str | None = None,
    provider: str | None = None,
    state: str | None = None,
) -> list[NodeRow]:
    now = time.time()
    rows = []
    for node in store.list(label, provider, state):
        held = node.state == NodeState.HOLD
        rows.append(
            NodeRow(
                id=node.id,
                name=node.name,
                label=node.label,
                provider=node.provider,
                state=node.state,
                age=now - node.created_at,
                address=node.address,
                port=node.port,
                external_id=node.external_id,
                build_uuid=node.build_uuid,
                comment=node.comment,
                held_by=("failed build" if node.auto_hold else "operator") if held else "",
                hold_until=node.hold_until if held else None,
            )
        )
    return rows


@dataclass(frozen=True)
class ImageRow:
    id: int
    name: str
    provider: str
    label: str
    state: str
    #: The newest READY image of its provider and label: new nodes boot from it.
    current: bool
    age: float
    external_id: str
    #: The last line of the comment (a failed build's reason).
    comment: str


def image_rows(images: ImageStore) -> list[ImageRow]:
    rows = images.list()
    current = {}
    for image in rows:
        if image.state == ImageState.READY:
            current[(image.provider, image.label)] = image.name
    now = time.time()
    return [
        ImageRow(
            id=image.id,
            name=image.name,
            provider=image.provider,
            label=image.label,
            state=image.state,
            current=current.get((image.provider, image.label)) == image.name,
            age=now - image.created_at,
            external_id=image.external_id,
            comment=image.comment.splitlines()[-1] if image.comment else "",
        )
        for image in rows
    ]


@dataclass(frozen=True)
class LabelRow:
    name: str
    min_ready: int
    hold_max: int
    #: The providers it names (empty: any that serves it).
    providers: tuple[str, ...]
    #: Nodes by state.
    counts: dict[str, int]
    #: Builds waiting for a node of it.
    waiting: int


def label_rows(site: SiteConfig, store: NodeStore) -> list[LabelRow]:
    """Every label the site names, has nodes of, or has builds waiting for."""
    census = store.census()
    pending = store.pending_requests()
    configured = {label.name: label for label in site.labels}
    names = sorted({lb for lb, _, _ in census} | set(configured) | set(pending))
    rows = []
    for name in names:
        counts: dict[str, int] = {}
        for (lb, _, state), n in census.items():
            if lb == name:
                counts[state] = counts.get(state, 0) + n
        config = configured.get(name)
        rows.append(
            LabelRow(
                name=name,
                min_ready=config.min_ready if config is not None else 0,
                hold_max=site.hold_max(name),
                providers=tuple(config.providers) if config is not None else (),
                counts=counts,
                waiting=pending.get(name, 0),
            )
        )
    return rows


@dataclass(frozen=True)
class ProviderRow:
    name: str
    driver: str
    max_servers: int
    #: Nodes taking its capacity (held ones too).
    in_use: int
    #: Nodes by state.
    counts: dict[str, int]
    #: Seconds its launches are still held back after failures (0: none);
    #: None when no pool runs in this process to know it.
    backing_off: float | None


def provider_rows(
    site: SiteConfig, store: NodeStore, backoff: Mapping[str, float] | None = None
) -> list[ProviderRow]:
    """The site's providers; ``backoff`` (provider -> until, epoch) is what a
    pool in this process knows, None when none runs here."""
    census = store.census()
    now = time.time()
    rows = []
    for config in site.providers:
        counts: dict[str, int] = {}
        for (_, provider, state), n in census.items():
            if provider == config.name:
                counts[state] = counts.get(state, 0) + n
        until = None if backoff is None else backoff.get(config.name, 0.0)
        rows.append(
            ProviderRow(
                name=config.name,
                driver=config.driver,
                max_servers=config.max_servers,
                in_use=sum(counts.get(state, 0) for state in OCCUPYING),
                counts=counts,
                backing_off=None if until is None else max(0.0, until - now),
            )
        )
    return rows
