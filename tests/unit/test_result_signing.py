"""Who signed a build's start or result, and what a signature cannot be used for."""

from __future__ import annotations

import base64
import datetime
from dataclasses import replace
from pathlib import Path

import pytest

from gatekeeper.dispatch import certs, protocol
from gatekeeper.dispatch.certs import Identity, Role, TlsFiles
from gatekeeper.dispatch.signing import ResultSigner, ResultVerifier, claimed_identity
from gatekeeper.errors import ResultRefusedError
from gatekeeper.model.results import CompleteData, NodeWait, StartData

pytestmark = pytest.mark.timeout(30)

UUID = "0" * 32
OTHER = "1" * 32


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    certs.create_ca(directory)
    return directory


def member(site: Path, tmp: Path, role: Role = Role.WORKER, name: str = "w1") -> TlsFiles:
    return certs.issue(site, role, name, out=tmp / f"{role}-{name}")


def verifier(site: Path) -> ResultVerifier:
    return ResultVerifier((site / certs.CA_CERT).read_bytes())


def start(uuid: str = UUID) -> StartData:
    return StartData(uuid, "w1", "node-1", "local", "http://logs/1", 1700000000.25)


def complete(result: str = "FAILURE") -> CompleteData:
    return CompleteData(UUID, result, "http://logs/1", "node-1", "local", "w1", 1700000000.25)


def test_a_signed_start_and_result_name_their_worker(site: Path, tmp_path: Path) -> None:
    signer = ResultSigner.from_files(member(site, tmp_path))
    check = verifier(site)
    assert check.verify(signer.sign(start(), 2), UUID, 2) == Identity(Role.WORKER, "w1")
    signed = signer.sign(complete(), 2)
    assert check.verify(signed, UUID, 2) == Identity(Role.WORKER, "w1")
    assert claimed_identity(signed) == Identity(Role.WORKER, "w1")


def test_the_dispatchers_attempt_on_a_start_is_not_part_of_what_is_signed(
    site: Path, tmp_path: Path
) -> None:
    """The dispatcher writes its own attempt count into a StartData it passes
    on; the signed attempt is the one the worker was given."""
    signed = ResultSigner.from_files(member(site, tmp_path)).sign(start(), 1)
    assert verifier(site).verify(replace(signed, attempt=3), UUID, 1).name == "w1"


def refused(check: ResultVerifier, data: StartData | CompleteData, uuid: str, attempt: int) -> str:
    with pytest.raises(ResultRefusedError) as caught:
        check.verify(data, uuid, attempt)
    return str(caught.value)


def test_a_signature_of_another_build_is_refused(site: Path, tmp_path: Path) -> None:
    signer = ResultSigner.from_files(member(site, tmp_path))
    check = verifier(site)
    signed = signer.sign(start(OTHER), 1)
    assert "another build" in refused(check, signed, UUID, 1)
    # Nor can the uuid inside be changed to the build's: the signature covers it.
    assert "not for this build" in refused(check, replace(signed, uuid=UUID), UUID, 1)


def test_a_signature_of_another_attempt_is_refused(site: Path, tmp_path: Path) -> None:
    signed = ResultSigner.from_files(member(site, tmp_path)).sign(complete(), 1)
    assert "not for this build" in refused(verifier(site), signed, UUID, 2)


def test_a_signature_of_another_kind_of_packet_is_refused(site: Path, tmp_path: Path) -> None:
    signed = ResultSigner.from_files(member(site, tmp_path)).sign(start(), 1)
    # The same fields a start and a result share, under the start's signature.
    as_result = CompleteData(
        UUID,
        "SUCCESS",
        signed.url,
        signed.node,
        signed.provider,
        signed.worker,
        signed.started_at,
        certificate=signed.certificate,
        signature=signed.signature,
    )
    assert "not for this build" in refused(verifier(site), as_result, UUID, 1)


def test_a_changed_result_is_refused(site: Path, tmp_path: Path) -> None:
    signed = ResultSigner.from_files(member(site, tmp_path)).sign(complete("FAILURE"), 1)
    assert "not for this build" in refused(
        verifier(site), replace(signed, result="SUCCESS"), UUID, 1
    )


def test_a_certificate_of_another_ca_is_refused(site: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-ca"
    certs.create_ca(elsewhere, name="other")
    signed = ResultSigner.from_files(member(elsewhere, tmp_path)).sign(complete("SUCCESS"), 1)
    assert "not issued by this site's CA" in refused(verifier(site), signed, UUID, 1)


def test_an_expired_certificate_is_refused(site: Path, tmp_path: Path) -> None:
    signed = ResultSigner.from_files(member(site, tmp_path)).sign(complete("SUCCESS"), 1)
    # Past the certificate's end (825 days), within the CA's (3650).
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=900)
    check = ResultVerifier((site / certs.CA_CERT).read_bytes(), clock=lambda: later)
    assert "expired" in refused(check, signed, UUID, 1)


@pytest.mark.parametrize(
    "role", [Role.SCHEDULER, Role.OPERATOR, Role.POOL, Role.SERVER], ids=lambda r: str(r)
)
def test_a_certificate_of_another_role_is_refused(site: Path, tmp_path: Path, role: Role) -> None:
    signed = ResultSigner.from_files(member(site, tmp_path, role)).sign(complete("SUCCESS"), 1)
    assert "not a worker" in refused(verifier(site), signed, UUID, 1)


def test_a_key_that_is_not_the_certificates_is_refused(site: Path, tmp_path: Path) -> None:
    """A worker's certificate (public) with a signature made by another key."""
    real = member(site, tmp_path, name="w1")
    thief = member(site, tmp_path, name="thief")
    forged = ResultSigner(real.cert.read_bytes(), certs.load_private_key(thief.key))
    signed = forged.sign(complete("SUCCESS"), 1)
    assert "not for this build" in refused(verifier(site), signed, UUID, 1)


@pytest.mark.parametrize(
    ("certificate", "signature", "why"),
    [
        ("", "", "not signed"),
        ("garbage", "c2ln", "not a certificate"),
        (None, "!!not base64!!", "unreadable signature"),
        (None, base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(), "not for this"),
        (None, "", "not signed"),
    ],
    ids=["unsigned", "garbage-certificate", "garbage-signature", "wrong-signature", "no-sig"],
)
def test_garbage_is_refused(
    site: Path, tmp_path: Path, certificate: str | None, signature: str, why: str
) -> None:
    pem = member(site, tmp_path).cert.read_text()
    data = replace(complete("SUCCESS"), certificate=pem if certificate is None else certificate)
    data = replace(data, signature=signature)
    assert why in refused(verifier(site), data, UUID, 1)
    assert claimed_identity(data) in (None, Identity(Role.WORKER, "w1"))


def test_a_signature_survives_the_trip_through_gearman(site: Path, tmp_path: Path) -> None:
    """What the worker signs is what the dispatcher reads back from the
    packet's JSON: nested data (a NODE_FAILURE's pool counts) and floats too."""
    signer = ResultSigner.from_files(member(site, tmp_path))
    wait = NodeWait("devstack-vm", 120.125, ready=0, held=4, capacity=4, providers=["local"])
    data = replace(complete("NODE_FAILURE"), node_wait=wait, ended_at=1700000123.0625)
    read = protocol.decode_complete(protocol.encode(signer.sign(data, 3)))
    assert verifier(site).verify(read, UUID, 3) == Identity(Role.WORKER, "w1")
    start_read = protocol.decode_start(protocol.encode(signer.sign(start(), 3)))
    assert verifier(site).verify(start_read, UUID, 3) == Identity(Role.WORKER, "w1")
