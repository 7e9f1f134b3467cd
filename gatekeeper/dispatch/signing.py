"""Build results signed by the worker that ran the build.

Gearman says nothing about who sent a packet: a server passes WORK_DATA and
WORK_COMPLETE on to the client from any connection that names the job's
handle. So a worker signs what it says about a build with its certificate's
key (:class:`ResultSigner`), and the scheduler believes it only when the
certificate was issued by the site's CA to a worker and the signature holds
(:class:`ResultVerifier`). Which worker may answer which build is the
dispatcher's business (:mod:`gatekeeper.dispatch.client`); this module only
says who signed.

What is signed is a canonical JSON text of the build's uuid, the attempt
the worker was given, the kind of packet (``start`` or ``complete``) and
every field of the packet but the signature: a signature made for one
build, one attempt or one kind of packet does not verify for another.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from enum import StrEnum
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gatekeeper.dispatch.certs import (
    Identity,
    Role,
    TlsFiles,
    identity_of,
    load_private_key,
    verified_identity,
)
from gatekeeper.errors import CertificateError, ResultRefusedError
from gatekeeper.model.outside import shown
from gatekeeper.model.results import CompleteData, StartData

__all__ = ["Kind", "ResultSigner", "ResultVerifier", "claimed_identity"]

Data = TypeVar("Data", StartData, CompleteData)

# Bumped if the canonical text ever changes, so an old signature cannot be
# read under new rules.
_VERSION = 1
# Not signed: the signature itself, and the attempt the dispatcher fills in
# on a StartData (the signed attempt travels in the envelope instead).
_UNSIGNED = ("signature", "attempt")
_ECDSA = ec.ECDSA(hashes.SHA256())


class Kind(StrEnum):
    """Which packet a signature is for."""

    START = "start"  # WORK_DATA
    COMPLETE = "complete"  # WORK_COMPLETE


def _kind_of(data: StartData | CompleteData) -> Kind:
    return Kind.START if isinstance(data, StartData) else Kind.COMPLETE


def _message(uuid: str, attempt: int, kind: Kind, data: StartData | CompleteData) -> bytes:
    payload = {k: v for k, v in asdict(data).items() if k not in _UNSIGNED}
    envelope: dict[str, Any] = {
        "v": _VERSION,
        "uuid": uuid,
        "attempt": attempt,
        "kind": str(kind),
        "payload": payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class ResultSigner:
    """A worker's key and certificate; signs in the worker's build threads."""

    def __init__(self, certificate_pem: bytes, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate_pem.decode("ascii")
        self._key = key

    @classmethod
    def from_files(cls, files: TlsFiles) -> ResultSigner:
        """:raises CertificateError: the certificate or key cannot be read."""
        try:
            pem = files.cert.read_bytes()
        except OSError as exc:
            raise CertificateError(f"cannot read the certificate {files.cert}: {exc}") from None
        return cls(pem, load_private_key(files.key))

    def sign(self, data: Data, attempt: int) -> Data:
        """``data`` with this worker's certificate and its signature for ``attempt``."""
        data = replace(data, certificate=self.certificate, signature="")
        message = _message(data.uuid, attempt, _kind_of(data), data)
        signature = self._key.sign(message, _ECDSA)
        return replace(data, signature=base64.b64encode(signature).decode("ascii"))


class ResultVerifier:
    """The site CA's certificate; checks packets in the dispatcher's thread."""

    def __init__(
        self,
        ca_pem: bytes,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._ca = ca_pem
        self._clock = clock

    @classmethod
    def from_files(cls, files: TlsFiles) -> ResultVerifier:
        """:raises CertificateError: the CA certificate cannot be read."""
        try:
            return cls(files.ca.read_bytes())
        except OSError as exc:
            raise CertificateError(f"cannot read the CA certificate {files.ca}: {exc}") from None

    def verify(self, data: StartData | CompleteData, uuid: str, attempt: int) -> Identity:
        """The worker that signed ``data`` for attempt ``attempt`` of build ``uuid``.

        :raises ResultRefusedError: unsigned, signed by a certificate this
            site's CA did not issue to a worker (or expired), or the signature
            is not for this build, attempt and kind of packet.
        """
        if not data.certificate or not data.signature:
            raise ResultRefusedError("not signed")
        now = self._clock() if self._clock is not None else None
        try:
            identity = verified_identity(data.certificate.encode("utf-8"), self._ca, now)
        except (CertificateError, UnicodeError) as exc:
            raise ResultRefusedError(str(exc)) from None
        if identity.role is not Role.WORKER:
            raise ResultRefusedError(f"signed by {identity}, which is not a worker")
        if data.uuid != uuid:
            raise ResultRefusedError(f"signed for another build ({shown(data.uuid, 64)})")
        try:
            signature = base64.b64decode(data.signature, validate=True)
            key = x509.load_pem_x509_certificate(data.certificate.encode("utf-8")).public_key()
        except (binascii.Error, ValueError) as exc:
            raise ResultRefusedError(f"unreadable signature: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ResultRefusedError("the certificate's key is not an EC key")
        try:
            key.verify(signature, _message(uuid, attempt, _kind_of(data), data), _ECDSA)
        except InvalidSignature:
            raise ResultRefusedError(
                f"the signature of {identity} is not for this build, attempt and packet"
            ) from None
        return identity


def claimed_identity(data: StartData | CompleteData | None) -> Identity | None:
    """Who a packet says it comes from, unchecked (for the log and the audit
    record of a refusal); None when it names nobody readable."""
    if data is None or not data.certificate:
        return None
    try:
        return identity_of(data.certificate.encode("utf-8"))
    except (CertificateError, UnicodeError):
        return None
