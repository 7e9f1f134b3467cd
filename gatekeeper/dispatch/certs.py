"""The site's small certificate authority, and who a certificate says its holder is.

Every part of a site that speaks Gearman (the server, the scheduler, each
worker, the pool, an operator) holds a certificate issued by the site's CA.
The certificate's common name is ``<role>:<name>``: ``worker:build-host-3``,
``scheduler:gk1``. The role decides what the holder may do (the Gearman
server's ACL, whose results the scheduler believes); the name says which one
of them it is, for the build row and the log.

A TLS directory holds ``ca.pem`` and, per role the host plays, ``<role>.pem``
and ``<role>.key``. ``ca.key`` lives only where certificates are issued: the
all-in-one default makes the whole directory under ``state/tls`` at first
start; a split site runs ``gatekeeper certs init`` once and ``gatekeeper
certs issue`` per host, and copies each host its files.

Keys are ECDSA P-256 (what every TLS stack here speaks, and small enough to
sign each build result cheaply); private keys are written 0600 and never
logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gatekeeper.errors import CertificateError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "Identity",
    "Role",
    "TlsFiles",
    "create_ca",
    "ensure_local",
    "identity_of",
    "issue",
    "load_private_key",
    "verified_identity",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
# Long enough that an all-in-one site never has to think about it; a split
# site re-issues with ``gatekeeper certs issue`` (short-lived certs are its call).
CA_DAYS = 3650
CERT_DAYS = 825


class Role(StrEnum):
    """What a certificate's holder is to the site."""

    SERVER = "server"  # a Gearman server
    SCHEDULER = "scheduler"  # submits builds, answers operator requests
    WORKER = "worker"  # takes builds and reports their results
    POOL = "pool"
    OPERATOR = "operator"  # the gatekeeper CLI of a person


@dataclass(frozen=True)
class Identity:
    """Who a certificate (or a result signed with its key) comes from."""

    role: Role
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"

    @classmethod
    def parse(cls, common_name: str) -> Identity:
        """:raises CertificateError: not ``<role>:<name>`` with a known role."""
        role, sep, name = common_name.partition(":")
        if not sep or not name:
            raise CertificateError(f"certificate name {common_name!r} is not <role>:<name>")
        try:
            return cls(Role(role), name)
        except ValueError:
            raise CertificateError(f"certificate name {common_name!r}: unknown role") from None


@dataclass(frozen=True)
class TlsFiles:
    """The three files one TLS endpoint needs, in the shape ``gear`` takes them."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def for_role(cls, directory: Path, role: Role) -> TlsFiles:
        """The files of ``role`` in a TLS directory.

        :raises CertificateError: one of them is missing (says which, and how to make it).
        """
        files = cls(directory / CA_CERT, directory / f"{role}.pem", directory / f"{role}.key")
        for path in (files.ca, files.cert, files.key):
            if not path.is_file():
                raise CertificateError(
                    f"{path} is missing: make it with "
                    f"'gatekeeper certs issue --role {role} --name NAME --out {directory}'"
                )
        return files

    def gear_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``gear`` (``Server``, ``addServer``)."""
        return {"ssl_ca": str(self.ca), "ssl_cert": str(self.cert), "ssl_key": str(self.key)}

    def identity(self) -> Identity:
        """Who this certificate names (it is not checked against the CA here)."""
        return identity_of(self.cert.read_bytes())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """:raises CertificateError: not an unencrypted EC private key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # The exception text never includes key material; the path is enough.
        raise CertificateError(
            f"cannot read the private key {path}: {type(exc).__name__}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path} is not an EC private key")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read the certificate {path}: {exc}") from None


def create_ca(directory: Path, name: str = "gatekeeper") -> Path:
    """Make a new CA in ``directory`` (``ca.pem``, ``ca.key``); return ``ca.pem``.

    :raises CertificateError: the directory already has a CA (never overwritten:
        every certificate it issued would stop working).
    """
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise CertificateError(f"{directory} already has a CA ({CA_CERT} or {CA_KEY})")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    ca_dir: Path,
    role: Role,
    name: str,
    hosts: Iterable[str] = (),
    out: Path | None = None,
) -> TlsFiles:
    """Issue ``role``'s certificate for ``name`` with the CA in ``ca_dir``.

    Writes ``<role>.pem``, ``<role>.key`` and a copy of ``ca.pem`` into
    ``out`` (default ``ca_dir``), replacing an older certificate of the role.
    ``hosts`` (names or addresses) go into the certificate's subject
    alternative names; a server certificate always gets ``localhost`` and
    ``127.0.0.1`` too.

    :raises CertificateError: no CA in ``ca_dir``, or ``name`` holds a character
        a certificate name must not (":" or a control character).
    """
    if not name or ":" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise CertificateError(f"{name!r} cannot be a certificate name")
    ca_cert = _load_cert(ca_dir / CA_CERT)
    ca_key = load_private_key(ca_dir / CA_KEY)
    out = out or ca_dir
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    hosts = list(hosts)
    if role is Role.SERVER:
        hosts += ["localhost", "127.0.0.1", socket.gethostname()]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.SERVER:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role}:{name}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    files = TlsFiles(out / CA_CERT, out / f"{role}.pem", out / f"{role}.key")
    _write_private(files.key, _key_pem(key))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if files.ca != ca_dir / CA_CERT:
        files.ca.write_bytes((ca_dir / CA_CERT).read_bytes())
    return files


def ensure_local(directory: Path, name: str | None = None) -> dict[Role, TlsFiles]:
    """The all-in-one's TLS directory: made at first start, reused after.

    Makes a CA in ``directory`` when it has none, then a certificate for every
    role that has none yet, all named ``name`` (default: this host's name).

    :raises CertificateError: the directory has certificates but no ``ca.key``
        and a role's certificate is missing (someone else's CA: issue it there).
    """
    name = name or socket.gethostname()
    if not (directory / CA_CERT).exists() and not (directory / CA_KEY).exists():
        create_ca(directory)
    files: dict[Role, TlsFiles] = {}
    for role in Role:
        try:
            files[role] = TlsFiles.for_role(directory, role)
        except CertificateError:
            if not (directory / CA_KEY).exists():
                raise
            files[role] = issue(directory, role, name)
    return files


def identity_of(cert_pem: bytes) -> Identity:
    """The identity a certificate names, unchecked.

    :raises CertificateError: not a PEM certificate, or not named ``<role>:<name>``.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"not a certificate: {exc}") from None
    return _identity(cert)


def _identity(cert: x509.Certificate) -> Identity:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise CertificateError("a certificate must have exactly one common name")
    value = names[0].value
    return Identity.parse(value if isinstance(value, str) else value.decode("utf-8", "replace"))


def verified_identity(
    cert_pem: bytes, ca_pem: bytes, now: datetime.datetime | None = None
) -> Identity:
    """Who ``cert_pem`` names, once it is shown to be issued by the CA and valid now.

    :raises CertificateError: not issued by this CA, expired or not yet valid,
        a CA certificate itself, or not named ``<role>:<name>``.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise CertificateError(f"not a certificate: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError("the certificate is not issued by this site's CA") from None
    now = now or _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError("the certificate is expired or not yet valid")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateError("a CA certificate cannot act as a site member")
    return _identity(cert)
