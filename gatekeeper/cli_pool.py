"""``gatekeeper nodes``, ``gatekeeper images`` and ``gatekeeper pool status``.

They work on the site's database directly (any host that can reach it), so
they need no running daemon: a hold, release or delete is picked up by the
pool at its next round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from gatekeeper.config.loader import load_local_site
from gatekeeper.config.site import SiteConfig, parse_duration
from gatekeeper.errors import GatekeeperError
from gatekeeper.model.node import NodeState

if TYPE_CHECKING:
    from gatekeeper.db.engine import Database
    from gatekeeper.db.nodes import NodeStore

site_option = click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site file (YAML). Default: ./gatekeeper.yaml if it exists.",
)


def _site(site_path: Path | None) -> SiteConfig:
    try:
        site = load_local_site(site_path)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    return site


@contextmanager
def _database(site: SiteConfig) -> Iterator[Database]:
    from gatekeeper.db.engine import Database

    try:
        db = Database(site.database)
        db.migrate()
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def _node_store(site_path: Path | None) -> Iterator[NodeStore]:
    """The site's node records, for a command that acts on one node: what
    the store refuses (an unknown ID, a node in the wrong state) is the
    command's error."""
    from gatekeeper.db.nodes import NodeStore

    with _database(_site(site_path)) as db:
        try:
            yield NodeStore(db)
        except GatekeeperError as exc:
            raise click.ClickException(str(exc)) from exc


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _print(table: Table) -> None:
    Console(width=200, soft_wrap=True, markup=False, highlight=False).print(table)


# -- nodes -------------------------------------------------------------------


@click.group()
def nodes() -> None:
    """List the pool's nodes; hold, release or delete one."""


@nodes.command("list")
@site_option
@click.option("--label", help="Only nodes of this label.")
@click.option("--provider", help="Only nodes of this provider.")
@click.option("--state", type=click.Choice([s.value for s in NodeState], case_sensitive=False))
def nodes_list(
    site_path: Path | None, label: str | None, provider: str | None, state: str | None
) -> None:
    """A table of nodes: id, name, label, provider, state, age, address, build.

    A held node says who held it (``failed build``: the hold cap may release
    it; ``operator``: only its time or ``nodes release`` ends it) and how
    long it has left; its comment says why."""
    from gatekeeper.db.nodes import NodeStore
    from gatekeeper.db.pool_view import age, node_rows

    site = _site(site_path)
    with _database(site) as db:
        rows = node_rows(NodeStore(db), label, provider, state.upper() if state else None)
    table = _table("id", "name", "label", "provider", "state", "age", "address", "build", "comment")
    for node in rows:
        table.add_row(
            str(node.id),
            node.name,
            node.label,
            node.provider,
            node.state_text,
            age(node.age),
            node.where,
            node.build_uuid[:12],
            node.comment,
        )
    _print(table)


@nodes.command("hold")
@site_option
@click.argument("ident", metavar="ID")
@click.option("--reason", required=True, help="Why: shown in 'nodes list'.")
@click.option(
    "--for",
    "duration",
    default=None,
    help="How long, e.g. 48h or 2d (default: the site's hold-failed time; 0: until released).",
)
@click.option(
    "--ssh-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A public key file to install on the node so its owner can log in.",
)
def nodes_hold(
    site_path: Path | None, ident: str, reason: str, duration: str | None, ssh_key: Path | None
) -> None:
    """Keep node ID (number or name) from being deleted or reused.

    The label's hold-max never releases a hold made here (it releases only
    holds the pool made for failed builds), but the hold counts toward it."""
    from gatekeeper.db.nodes import NodeStore
    from gatekeeper.db.pool_view import age
    from gatekeeper.pool.holds import hold_node
    from gatekeeper.pool.providers.base import public_key_line

    site = _site(site_path)
    try:
        seconds = (
            site.pool.hold_failed_hours * 3600 if duration is None else parse_duration(duration)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from exc
    # What can be refused without the node is refused before it is held.
    key = None
    if ssh_key is not None:
        try:
            key = public_key_line(ssh_key.read_text())
        except UnicodeDecodeError as exc:
            raise click.BadParameter(
                f"{ssh_key}: not a public key file (not text)", param_hint="--ssh-key"
            ) from exc
        except GatekeeperError as exc:
            raise click.BadParameter(f"{ssh_key}: {exc}", param_hint="--ssh-key") from exc
    with _database(site) as db:
        try:
            held = hold_node(site, NodeStore(db), ident, seconds or None, reason, key)
        except GatekeeperError as exc:
            raise click.ClickException(str(exc)) from exc
    until = "until released" if held.hold_until is None else f"for {age(seconds)}"
    click.echo(f"node {held.id} ({held.name}) held {until}: {reason}")
    if ssh_key is not None:
        click.echo(f"  ssh {held.username}@{held.address} -p {held.port}")


@nodes.command("release")
@site_option
@click.argument("ident", metavar="ID")
def nodes_release(site_path: Path | None, ident: str) -> None:
    """End the hold on node ID: the pool deletes it."""
    from gatekeeper.pool.holds import release_node

    with _node_store(site_path) as store:
        node = release_node(store, ident)
    click.echo(f"node {node.id} ({node.name}) released: DELETE")


@nodes.command("delete")
@site_option
@click.argument("ident", metavar="ID")
def nodes_delete(site_path: Path | None, ident: str) -> None:
    """Delete node ID whatever its state (a build on it will fail)."""
    with _node_store(site_path) as store:
        node = store.find(ident)
        if node.state not in (NodeState.DELETE, NodeState.DELETING):
            store.set_state(node.name, NodeState.DELETE, comment="deleted by an operator")
    click.echo(f"node {node.id} ({node.name}): DELETE")


# -- images ------------------------------------------------------------------


@click.group()
def images() -> None:
    """List the pool's images; build new ones now."""


@images.command("list")
@site_option
def images_list(site_path: Path | None) -> None:
    """A table of images: the newest READY one of a provider and label is current."""
    from gatekeeper.db.images import ImageStore
    from gatekeeper.db.pool_view import age, image_rows

    site = _site(site_path)
    with _database(site) as db:
        rows = image_rows(ImageStore(db))
    table = _table("id", "name", "provider", "label", "state", "age", "external id", "comment")
    for image in rows:
        table.add_row(
            str(image.id),
            image.name,
            image.provider,
            image.label,
            image.state + (" (current)" if image.current else ""),
            age(image.age),
            image.external_id,
            image.comment,
        )
    _print(table)


@images.command("update")
@site_option
@click.option("--provider", "only_provider", help="Only this provider.")
@click.option("--label", "only_label", help="Only this label.")
def images_update(
    site_path: Path | None, only_provider: str | None, only_label: str | None
) -> None:
    """Build a new image now for every provider and label that has setup
    scripts (or only those named), showing each step; one thread per
    provider, so a slow cloud does not hold up the others. Exits 1 if any
    build failed (the previous image stays current)."""
    from gatekeeper.db.images import ImageStore
    from gatekeeper.model.node import ImageState
    from gatekeeper.pool.images import ImageBuilder
    from gatekeeper.pool.providers import make_provider

    site = _site(site_path)
    work = [
        (config, image.label)
        for config in site.providers
        for image in config.images
        if image.builds
        and (only_provider is None or config.name == only_provider)
        and (only_label is None or image.label == only_label)
    ]
    if not work:
        raise click.ClickException(
            "nothing to build: no provider has setup scripts or the image kit for that"
        )
    console = Console(highlight=False, markup=False, soft_wrap=True)
    lock = threading.Lock()
    failed: list[str] = []
    with _database(site) as db:
        builder = ImageBuilder(ImageStore(db), site.image_update.keep)

        def build(config_index: int) -> None:
            config, label = work[config_index]
            prefix = f"[{config.name}/{label}]"

            def progress(line: str) -> None:
                with lock:
                    console.print(f"{time.strftime('%H:%M:%S')} {prefix} {line}")

            try:
                provider = make_provider(config, site.pool.name)
                image = builder.build(provider, label, progress)
            except GatekeeperError as exc:
                progress(f"FAILED: {exc}")
                failed.append(prefix)
                return
            if image.state == ImageState.READY:
                progress(f"READY: {image.name} ({image.external_id})")
            else:
                progress(f"FAILED: {image.comment}")
                failed.append(prefix)

        threads = [
            threading.Thread(target=build, args=(i,), name=f"image-{i}") for i in range(len(work))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(work)} image builds failed")


# -- pool status ---------------------------------------------------------------


def pool_status(site_path: Path | None) -> None:
    """Per label and provider: ready, building, in use, held, deleting,
    waiting demand, min-ready, the label's hold-max and capacity (nodes
    taking room / max-servers: held nodes take room too)."""
    from gatekeeper.db.nodes import NodeStore

    site = _site(site_path)
    with _database(site) as db:
        store = NodeStore(db)
        census = store.census()
        pending = store.pending_requests()
        usage = {p.name: store.provider_usage(p.name) for p in site.providers}
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for (label, provider, state), n in census.items():
        counts.setdefault((label, provider), {})[state] = n
    min_ready = {label.name: label.min_ready for label in site.labels}
    table = _table(
        "label",
        "provider",
        "ready",
        "building",
        "in use",
        "held",
        "deleting",
        "waiting",
        "min-ready",
        "hold-max",
        "capacity",
    )
    labels = sorted({label for label, _ in counts} | set(min_ready) | set(pending))
    for label in labels:
        providers = sorted(p for lb, p in counts if lb == label) or ["-"]
        for i, provider in enumerate(providers):
            c = counts.get((label, provider), {})
            config = next((p for p in site.providers if p.name == provider), None)
            capacity = (
                f"{usage.get(provider, 0)}/{config.max_servers}" if config is not None else "-"
            )
            table.add_row(
                label if i == 0 else "",
                provider,
                str(c.get(NodeState.READY, 0)),
                str(c.get(NodeState.BUILDING, 0)),
                str(c.get(NodeState.USED, 0)),
                str(c.get(NodeState.HOLD, 0)),
                str(c.get(NodeState.DELETE, 0) + c.get(NodeState.DELETING, 0)),
                str(pending.get(label, 0)) if i == 0 else "",
                str(min_ready.get(label, 0)) if i == 0 else "",
                str(site.hold_max(label)) if i == 0 else "",
                capacity,
            )
    _print(table)


def register(main: click.Group) -> None:
    """Add ``nodes`` and ``images`` to the ``gatekeeper`` command."""
    main.add_command(nodes)
    main.add_command(images)
