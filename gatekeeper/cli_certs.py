"""``gatekeeper certs``: the site's CA and the certificates of its Gearman members.

The all-in-one (``gatekeeper run``, ``gatekeeper sandbox``) makes its own at
first start. A site split across hosts runs ``certs init`` once where the CA
key is to live, ``certs issue`` for every other host, and copies each host
its directory (``ca.pem``, ``<role>.pem``, ``<role>.key``; never ``ca.key``).
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import click
from cryptography import x509

from gatekeeper.config.loader import load_local_site
from gatekeeper.dispatch.certs import CA_CERT, Role, create_ca, issue, verified_identity
from gatekeeper.errors import GatekeeperError
from gatekeeper.model.outside import shown

site_option = click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site file (YAML); its gearman.tls-dir is the default directory.",
)
dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="The TLS directory. Default: the site's gearman.tls-dir (<state-dir>/tls).",
)
ROLES = [role.value for role in Role]


def _directory(site_path: Path | None, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    site = load_local_site(site_path)
    assert site.gearman.tls_dir is not None  # resolved by SiteConfig
    return site.gearman.tls_dir


@click.group()
def certs() -> None:
    """The site's CA and its members' certificates (Gearman over TLS)."""


@certs.command("init")
@site_option
@dir_option
@click.option("--name", help="The name in this host's certificates. Default: the host's name.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A name or address the Gearman server here is reached by (repeatable).",
)
def init(
    site_path: Path | None, directory: Path | None, name: str | None, hosts: tuple[str, ...]
) -> None:
    """Make a new CA, and a certificate for each role on this host.

    Refuses a directory that already has a CA: every certificate it issued
    would stop working.
    """
    try:
        directory = _directory(site_path, directory)
        create_ca(directory)
        name = name or socket.gethostname()
        for role in Role:
            files = issue(directory, role, name, hosts if role is Role.SERVER else ())
            click.echo(f"{files.cert}: {role}:{name}")
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"new CA in {directory / CA_CERT}; its key {directory / 'ca.key'} stays here")


@certs.command("issue")
@site_option
@dir_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the holder is.")
@click.option("--name", required=True, help="Which one: a worker's name, a person, a host.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A name or address it is reached by (a server's; repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Where to write <role>.pem, <role>.key and ca.pem, to copy to that host.",
)
def issue_command(
    site_path: Path | None,
    directory: Path | None,
    role: str,
    name: str,
    hosts: tuple[str, ...],
    out: Path,
) -> None:
    """Issue a certificate for another host (or person) with this site's CA."""
    try:
        files = issue(_directory(site_path, directory), Role(role), name, hosts, out=out)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{files.cert}: {role}:{name}; copy {out} to that host (the key is {files.key})")


@certs.command("show")
@site_option
@dir_option
def show(site_path: Path | None, directory: Path | None) -> None:
    """Who each certificate in the directory names, whether this CA issued it, its expiry."""
    try:
        directory = _directory(site_path, directory)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    ca_path = directory / CA_CERT
    if not ca_path.is_file():
        raise click.ClickException(
            f"{ca_path} is missing: make a CA with 'gatekeeper certs init --dir {directory}'"
        )
    ca_pem = ca_path.read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    click.echo(f"{ca_path}: CA {shown(ca.subject.rfc4514_string())}, {_expiry(ca)}")
    for path in sorted(directory.glob("*.pem")):
        if path == ca_path:
            continue
        pem = path.read_bytes()
        try:
            cert = x509.load_pem_x509_certificate(pem)
            who = str(verified_identity(pem, ca_pem))
        except (ValueError, GatekeeperError) as exc:
            click.echo(f"{path}: NOT USABLE: {shown(exc)}")
            continue
        click.echo(f"{path}: {shown(who)}, {_expiry(cert)}")


def _expiry(cert: x509.Certificate) -> str:
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({left.days} days)"


def register(main: click.Group) -> None:
    """Add ``certs`` to the ``gatekeeper`` command."""
    main.add_command(certs)
