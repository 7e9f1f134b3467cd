"""The known failures a worker found, from its scan to the report: stored in
the database, carried signed in WORK_COMPLETE, and said in the report; and
the signatures reloaded on reconfigure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.app import Gatekeeper
from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import FailureMatch
from gatekeeper.dispatch import certs, protocol
from gatekeeper.dispatch.certs import Identity, Role
from gatekeeper.dispatch.signing import ResultSigner, ResultVerifier
from gatekeeper.errors import ConfigError, DispatchError, ResultRefusedError
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.results import CompleteData, Recognised
from gatekeeper.scheduler.reports import recognised_lines
from gatekeeper.worker.recognise import FailureRecogniser

pytestmark = pytest.mark.timeout(30)

UUID = "0" * 32
EOF_SIGNATURE = """\
id: libvirt-eof
description: libvirt closed the connection
bug: https://bugs.launchpad.net/nova/+bug/1643911
files: [logs/screen-n-cpu.txt*]
patterns: ['libvirtError: End of file']
job: ^gate-tempest-
"""


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    return database


def failed_logs(tmp_path: Path) -> Path:
    logs = tmp_path / "logs" / "42" / "check" / "job" / "abc"
    (logs / "logs").mkdir(parents=True)
    (logs / "console.txt").write_text("tempest failed\n")
    (logs / "logs" / "screen-n-cpu.txt").write_text("start\nlibvirtError: End of file\n")
    return logs


def test_the_worker_stores_what_it_found_and_names_it(tmp_path: Path, db: Database) -> None:
    failures = tmp_path / "failures"
    failures.mkdir()
    (failures / "eof.yaml").write_text(EOF_SIGNATURE)
    recogniser = FailureRecogniser(failures, db)
    logs = failed_logs(tmp_path)

    found = recogniser.recognise(UUID, logs, "gate-tempest-dsvm-full", "openstack/nova", "master")
    assert found == [
        Recognised(
            "libvirt-eof",
            "libvirt closed the connection",
            "https://bugs.launchpad.net/nova/+bug/1643911",
        )
    ]
    with db.session() as session:
        [row] = session.scalars(select(FailureMatch))
        assert (row.build_uuid, row.file, row.line_number) == (UUID, "logs/screen-n-cpu.txt", 2)
    # The job filter leaves other jobs' failures alone.
    assert recogniser.recognise("1" * 32, logs, "gate-nova-pep8", "openstack/nova", "master") == []


def test_a_reload_takes_new_signatures_and_keeps_the_old_on_a_bad_file(
    tmp_path: Path, db: Database
) -> None:
    failures = tmp_path / "failures"
    failures.mkdir()
    recogniser = FailureRecogniser(failures, db)
    logs = failed_logs(tmp_path)
    assert recogniser.recognise(UUID, logs, "gate-tempest-x", "p", "master") == []

    (failures / "eof.yaml").write_text(EOF_SIGNATURE)
    assert recogniser.reload()
    assert [r.signature for r in recogniser.recognise(UUID, logs, "gate-tempest-x", "p", "m")] == [
        "libvirt-eof"
    ]

    (failures / "broken.yaml").write_text("id: broken\ndescription: d\npatterns: ['(']\n")
    assert not recogniser.reload()
    assert [s.id for s in recogniser.signatures] == ["libvirt-eof"]


def test_what_was_recognised_is_signed_with_the_result(tmp_path: Path) -> None:
    """A worker's WORK_COMPLETE names what it found; changing that on the
    way (a description, a bug link) breaks the signature."""
    directory = tmp_path / "tls"
    certs.create_ca(directory)
    signer = ResultSigner.from_files(certs.issue(directory, Role.WORKER, "w1", out=tmp_path / "w"))
    verifier = ResultVerifier((directory / certs.CA_CERT).read_bytes())
    found = [Recognised("libvirt-eof", "libvirt closed the connection", "https://bugs/1")]
    data = CompleteData(UUID, "FAILURE", "http://logs/1", recognised=found)

    read = protocol.decode_complete(protocol.encode(signer.sign(data, 1)))
    assert read.recognised == found
    assert verifier.verify(read, UUID, 1) == Identity(Role.WORKER, "w1")

    forged = replace(read, recognised=[replace(found[0], bug="https://evil.example/")])
    with pytest.raises(ResultRefusedError):
        verifier.verify(forged, UUID, 1)


@pytest.mark.parametrize(
    "recognised",
    ['"libvirt-eof"', '[{"signature": 1, "description": "d"}]', '[{"id": "x"}]'],
    ids=["not-a-list", "wrong-type", "unknown-field"],
)
def test_a_malformed_recognised_is_refused(recognised: str) -> None:
    packet = f'{{"uuid": "{UUID}", "result": "FAILURE", "recognised": {recognised}}}'
    with pytest.raises(DispatchError, match="malformed WORK_COMPLETE"):
        protocol.decode_complete(packet)


def test_the_report_says_each_recognised_failure_of_a_failed_build() -> None:
    build = Build("gate-tempest-dsvm-full", "item", result=BuildResult.FAILURE)
    build.recognised = [
        Recognised("a", "libvirt closed the connection", "https://bugs/1"),
        # Text from a signature file stays on its line.
        Recognised("b", "two\nlines", ""),
    ]
    assert recognised_lines(build) == [
        "  Recognised: libvirt closed the connection https://bugs/1",
        "  Recognised: two\\nlines",
    ]
    build.result = BuildResult.SUCCESS
    assert recognised_lines(build) == []


def test_a_signature_that_does_not_load_stops_a_worker_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "layout.yaml").write_text("pipelines: []\n")
    (tmp_path / "failures").mkdir()
    (tmp_path / "failures" / "bad.yaml").write_text("id: bad\ndescription: d\npatterns: ['(']\n")
    site = SiteConfig().resolve(tmp_path)
    app = Gatekeeper(site, components=frozenset({"worker"}))
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: patterns\[0\]: not an RE2 expression"):
        app.start()
    # Refused before any thread started: nothing to stop.
    assert app.worker is None
