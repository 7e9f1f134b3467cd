"""Gearman over TLS: which certificate each process presents, and what each role may do.

Every Gearman connection of a site is TLS with a client certificate from the
site's CA (``gatekeeper.dispatch.certs``) unless the site file says
``gearman.insecure: true``. The embedded server decides what a connection may
do by the role its certificate names (:class:`RoleAcl`): a process that merely
reaches the port, or holds a certificate of another CA, does not finish the
handshake; one with the wrong role's certificate cannot take builds.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import TypedDict

from gatekeeper.config.site import SiteConfig
from gatekeeper.dispatch.certs import CA_CERT, CA_KEY, Identity, Role, TlsFiles, ensure_local
from gatekeeper.dispatch.protocol import BUILD_PREFIX, STOP_PREFIX
from gatekeeper.errors import CertificateError
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

__all__ = ["ADMIN_PREFIX", "RoleAcl", "check_external", "describe", "gear_kwargs", "site_tls"]

# The operator functions' prefix (dispatch.admin.PREFIX; kept here so the ACL
# does not depend on the admin module).
ADMIN_PREFIX = "gatekeeper:"


class GearTls(TypedDict, total=False):
    """gear's TLS keyword arguments (all three, or none for plain TCP)."""

    ssl_ca: str
    ssl_cert: str
    ssl_key: str


def gear_kwargs(tls: TlsFiles | None) -> GearTls:
    """``addServer``/``Server`` keyword arguments: none for plain TCP."""
    if tls is None:
        return {}
    return {"ssl_ca": str(tls.ca), "ssl_cert": str(tls.cert), "ssl_key": str(tls.key)}


def site_tls(site: SiteConfig, role: Role, name: str | None = None) -> TlsFiles | None:
    """The files ``role`` presents on this host; None when the site is insecure.

    A TLS directory with a CA key, or with nothing yet, is this host's own
    (the all-in-one and the sandbox): it is made at first start and a missing
    role's certificate is issued, named ``name`` (default: the host's name).
    Without a CA key it is a split site's host, which has only the certificates
    copied to it.

    :raises CertificateError: a file this role needs is missing (names it, and
        the command that makes it).
    """
    if site.gearman.insecure:
        return None
    directory = site.gearman.tls_dir
    if directory is None:  # resolved by SiteConfig; a bare GearmanConfig has none
        raise CertificateError("gearman.tls-dir is not set (and gearman.insecure is not true)")
    fresh = not (directory / CA_CERT).exists() and not (directory / CA_KEY).exists()
    if fresh or (directory / CA_KEY).exists():
        return ensure_local(directory, name)[role]
    return TlsFiles.for_role(directory, role)


def _identity(subject: str | None) -> Identity | None:
    if subject is None:
        return None
    try:
        return Identity.parse(subject)
    except CertificateError:
        return None


def _text(name: str | bytes) -> str:
    # gear hands function names over as the packet's bytes.
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


class RoleAcl:
    """The embedded ``gear.Server``'s access list, by certificate role.

    gear's own ``ACL`` matches exact subjects; a site's members are many and
    named by role, so this answers gear's three questions (``canRegister``,
    ``canInvoke``, ``canGrant``) from ``<role>:<name>``. Called from gear's
    server thread; holds no state.

    - ``worker:N`` registers ``build:*`` and ``stop:N`` (its own stop requests);
    - ``scheduler:*`` submits ``build:*`` and ``stop:*``, registers and submits
      ``gatekeeper:*`` (it answers operator requests);
    - ``operator:*`` submits ``gatekeeper:*``;
    - anyone else (the server's, the pool's, a name that is not ``<role>:<name>``)
      nothing. Nobody may change the list at run time (``acl grant``).
    """

    def canRegister(self, subject: str | None, name: str | bytes) -> bool:  # noqa: N802 - gear's name
        who, function = _identity(subject), _text(name)
        allowed = who is not None and (
            (
                who.role is Role.WORKER
                and (function.startswith(BUILD_PREFIX) or function == STOP_PREFIX + who.name)
            )
            or (who.role is Role.SCHEDULER and function.startswith(ADMIN_PREFIX))
        )
        if not allowed:
            log.warning(
                "gearman: %s may not register %s", shown(subject, 200), shown(function, 200)
            )
        return allowed

    def canInvoke(self, subject: str | None, name: str | bytes) -> bool:  # noqa: N802
        who, function = _identity(subject), _text(name)
        allowed = who is not None and (
            (
                who.role is Role.SCHEDULER
                and function.startswith((BUILD_PREFIX, STOP_PREFIX, ADMIN_PREFIX))
            )
            or (who.role is Role.OPERATOR and function.startswith(ADMIN_PREFIX))
        )
        if not allowed:
            log.warning("gearman: %s may not submit %s", shown(subject, 200), shown(function, 200))
        return allowed

    def canGrant(self, subject: str | None) -> bool:  # noqa: N802
        return False

    def getEntries(self) -> list[object]:  # noqa: N802 - gear's "acl list" asks for them
        return []


def describe(tls: TlsFiles | None) -> str:
    """One line for the start log: what this process presents."""
    if tls is None:
        return "plain TCP (gearman.insecure)"
    try:
        return f"TLS as {tls.identity()} (CA {Path(tls.ca)})"
    except CertificateError as exc:
        return f"TLS with {tls.cert} ({exc})"


def check_external(host: str, port: int, tls: TlsFiles, timeout: float = 5.0) -> None:
    """Refuse an external server that answers plain Gearman where TLS was expected.

    Debian's gearmand (1.1.20) takes ``--ssl`` and still speaks plain TCP on
    the port: every TLS handshake fails, and gear would retry for ever in
    silence. A server that is not up yet, or that speaks TLS, passes.

    :raises CertificateError: the server answered a plain ``status`` request.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    context.check_hostname = False
    context.load_cert_chain(str(tls.cert), str(tls.key))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return
    except ssl.SSLError:
        pass
    except OSError:
        return  # not up (yet): gear keeps trying, and says so
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.sendall(b"status\n")
            answer = raw.recv(1)
    except OSError:
        return
    if answer:
        raise CertificateError(
            f"the Gearman server at {host}:{port} speaks plain TCP, not TLS "
            "(Debian's gearmand ignores --ssl): run gear's geard with --ssl-ca, "
            "--ssl-cert and --ssl-key, or 'gatekeeper scheduler' with the embedded server, "
            "or set gearman.insecure: true in the site file"
        )
