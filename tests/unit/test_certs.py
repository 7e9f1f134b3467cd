"""The site CA: issuing, reading back who a certificate names, refusing strangers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gatekeeper.dispatch import certs
from gatekeeper.dispatch.certs import Identity, Role, TlsFiles
from gatekeeper.errors import CertificateError


def test_ensure_local_makes_every_role_once(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    files = certs.ensure_local(tls, name="gk1")
    assert set(files) == set(Role)
    for role, f in files.items():
        assert certs.verified_identity(f.cert.read_bytes(), f.ca.read_bytes()) == Identity(
            role, "gk1"
        )
        assert stat.S_IMODE(f.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / certs.CA_KEY).stat().st_mode) == 0o600
    before = {role: f.cert.read_bytes() for role, f in files.items()}
    again = certs.ensure_local(tls, name="gk1")
    assert {role: f.cert.read_bytes() for role, f in again.items()} == before


def test_a_certificate_of_another_ca_is_refused(tmp_path: Path) -> None:
    ours = certs.ensure_local(tmp_path / "ours", name="a")
    theirs = certs.ensure_local(tmp_path / "theirs", name="a")
    worker = theirs[Role.WORKER]
    with pytest.raises(CertificateError, match="not issued by this site's CA"):
        certs.verified_identity(worker.cert.read_bytes(), ours[Role.WORKER].ca.read_bytes())


def test_the_ca_itself_is_not_a_member(tmp_path: Path) -> None:
    files = certs.ensure_local(tmp_path, name="a")
    ca = files[Role.SERVER].ca.read_bytes()
    with pytest.raises(CertificateError):
        certs.verified_identity(ca, ca)


def test_issue_for_another_host_copies_the_ca(tmp_path: Path) -> None:
    certs.create_ca(tmp_path / "ca")
    files = certs.issue(tmp_path / "ca", Role.WORKER, "build-3", out=tmp_path / "host3")
    assert files == TlsFiles.for_role(tmp_path / "host3", Role.WORKER)
    assert files.identity() == Identity(Role.WORKER, "build-3")
    assert not (tmp_path / "host3" / certs.CA_KEY).exists()


def test_a_ca_is_never_overwritten(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    with pytest.raises(CertificateError, match="already has a CA"):
        certs.create_ca(tmp_path)


@pytest.mark.parametrize("name", ["", "a:b", "evil\nname", "bell\x07"])
def test_names_a_certificate_cannot_carry(tmp_path: Path, name: str) -> None:
    certs.create_ca(tmp_path)
    with pytest.raises(CertificateError, match="cannot be a certificate name"):
        certs.issue(tmp_path, Role.WORKER, name)


def test_a_missing_role_without_the_ca_key_says_how_to_issue_it(tmp_path: Path) -> None:
    certs.create_ca(tmp_path / "ca")
    certs.issue(tmp_path / "ca", Role.WORKER, "w", out=tmp_path / "host")
    with pytest.raises(CertificateError, match="gatekeeper certs issue --role server"):
        certs.ensure_local(tmp_path / "host")


@pytest.mark.parametrize("cn", ["nobody", "wizard:x", "worker:"])
def test_identity_names_must_be_role_and_name(cn: str) -> None:
    with pytest.raises(CertificateError):
        Identity.parse(cn)
