"""SMTP reporters: subjects with Zuul's placeholders, headers outside text
cannot forge, the layout checked against the site's smtp section, and the
mail queue against a real SMTP server (aiosmtpd, tests/fixtures/smtp.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.config.layout import load_layout
from gatekeeper.config.layout_schema import PipelineConfig, SmtpReporter
from gatekeeper.config.loader import load_site
from gatekeeper.config.site import SmtpConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.mail_outbox import MailOutbox
from gatekeeper.dispatch.certs import Role, create_ca, issue
from gatekeeper.errors import ConfigError
from gatekeeper.model.change import Change
from gatekeeper.scheduler.mail import (
    Mail,
    MailError,
    MailQueue,
    SmtpTransport,
    check_layout,
    compose_mail,
    render_subject,
)
from tests.fixtures.smtp import MailServer

pytestmark = pytest.mark.timeout(30)

CHANGE = Change(
    project="openstack/nova",
    branch="stable/liberty",
    number=1234,
    patchset=5,
    change_id="I0123abcd",
    subject="Fix the detach race",
    url="https://review.example.org/1234",
    owner="alice",
)
REF = Change.ref_update("openstack/nova", "master", "refs/tags/1.0.0", "0" * 40, "a" * 40)
CHECK = PipelineConfig.model_validate({"name": "check", "manager": "independent"})


@pytest.mark.parametrize(
    ("template", "change", "expected"),
    [
        pytest.param("Report for change {change}", CHANGE, "Report for change 1234,5", id="change"),
        pytest.param(
            "{change.project} {change.number},{change.patchset} on {change.branch}",
            CHANGE,
            "openstack/nova 1234,5 on stable/liberty",
            id="change-fields",
        ),
        pytest.param(
            "{pipeline.name}: {change.subject}", CHANGE, "check: Fix the detach race", id="pipeline"
        ),
        pytest.param(
            "{change.id} {change.url}",
            CHANGE,
            "I0123abcd https://review.example.org/1234",
            id="id-url",
        ),
        pytest.param(
            "{change} at {change.newrev:.7}", REF, f"refs/tags/1.0.0 at {'a' * 7}", id="ref"
        ),
    ],
)
def test_subject_placeholders(template: str, change: Change, expected: str) -> None:
    assert render_subject(template, change, CHECK) == expected


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{change.nope}", id="unknown-field"),
        pytest.param("{build.uuid}", id="unknown-name"),
        # str.format would walk from a value into its attributes.
        pytest.param("{change.number.__class__}", id="attribute-walk"),
        pytest.param("{change.__init__}", id="dunder"),
        pytest.param("{change[0]}", id="index"),
    ],
)
def test_a_placeholder_outside_the_list_is_refused(template: str) -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        render_subject(template, CHANGE, CHECK)


def test_outside_text_cannot_forge_a_header() -> None:
    """A subject from outside with a line break and a header after it stays
    one Subject line; no Bcc appears."""
    evil = Change(
        project="openstack/nova",
        branch="master",
        number=7,
        patchset=1,
        subject="innocent\r\nBcc: everyone@example.org\r\n\r\nfake body",
    )
    mail = compose_mail(
        SmtpConfig.model_validate({"default-to": "ci@example.org"}),
        SmtpReporter.model_validate({"subject": "{change.subject}"}),
        CHECK,
        evil,
        "failure",
        "Build failed.\n",
    )
    message = mail.message()
    assert message["Bcc"] is None
    wire = message.as_bytes()
    assert b"\nBcc:" not in wire and b"\r\nfake body" not in wire
    assert message["Subject"].startswith("innocent")
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]


def test_a_header_value_with_a_line_break_is_refused_not_sent() -> None:
    # The layout check refuses such addresses; EmailMessage is the backstop.
    mail = Mail(
        sender="a@example.org", to="b@example.org\r\nBcc: c@example.org", subject="s", body=""
    )
    with pytest.raises(ValueError):
        mail.message()


def _layout(tmp_path: Path, success: str) -> Path:
    path = tmp_path / "layout.yaml"
    path.write_text(
        "pipelines:\n"
        "  - name: check\n"
        "    manager: independent\n"
        "    trigger:\n"
        "      gerrit:\n"
        "        - event: patchset-created\n"
        "    success:\n"
        f"{success}"
        "jobs:\n"
        "  - name: unit\n"
        "projects:\n"
        "  - name: openstack/nova\n"
        "    check: [unit]\n"
    )
    return path


def test_smtp_reporters_without_a_site_smtp_section_are_refused(tmp_path: Path) -> None:
    path = _layout(tmp_path, "      smtp:\n        to: a@example.org\n")
    [error] = check_layout(load_layout(path), None)
    assert error.startswith(f"{path}:8: pipelines[0].success.smtp: the site file has no 'smtp'")


@pytest.mark.parametrize(
    ("smtp", "site", "expected"),
    [
        pytest.param("{}", {}, "10: pipelines[0].success.smtp: no 'to'", id="no-recipient"),
        pytest.param(
            "\n          to: not-an-address",
            {"default-to": "x@example.org"},
            "11: pipelines[0].success.smtp.to: not a mail address: 'not-an-address'",
            id="bad-to",
        ),
        pytest.param(
            "\n          subject: '{change.bogus}'",
            {"default-to": "x@example.org"},
            "11: pipelines[0].success.smtp.subject: unknown placeholder {change.bogus}",
            id="bad-placeholder",
        ),
    ],
)
def test_smtp_reporter_errors_name_the_line_and_key(
    tmp_path: Path, smtp: str, site: dict[str, str], expected: str
) -> None:
    path = _layout(tmp_path, f"      gerrit:\n        verified: 1\n      smtp: {smtp}\n")
    [error] = check_layout(load_layout(path), SmtpConfig.model_validate(site))
    assert error.startswith(f"{path}:") and expected in error, error


def test_a_bad_site_address_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    # YAML's double quotes make \r\n a real line break in the value.
    path.write_text('smtp:\n  server: mail.example.org\n  default-from: "robot\\r\\nBcc: x@y"\n')
    with pytest.raises(
        ConfigError, match=r"gatekeeper.yaml:3: smtp.default-from: .*not a mail address"
    ):
        load_site(path, tmp_path)


def _mail(to: str, subject: str) -> Mail:
    return Mail(
        sender="zuul@example.org", to=to, subject=subject, body="Build failed.\n", about=subject
    )


def test_a_mail_refused_for_good_is_dropped_and_the_rest_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MailServer(refuse=frozenset({"nobody@example.org"}))
    server.start()
    queue = MailQueue(SmtpConfig.model_validate(server.site()))
    try:
        with caplog.at_level(logging.ERROR, "gatekeeper.scheduler.mail"):
            queue.post(_mail("nobody@example.org", "refused"))
            queue.post(_mail("ci@example.org", "delivered"))
            [received] = server.wait_for(1)
        assert received.subject == "delivered" and received.rcpt_tos == ["ci@example.org"]
        assert queue.dropped == 1
        assert "refused for good, dropped" in caplog.text and "550" in caplog.text
    finally:
        queue.stop()
        server.stop()


def test_mail_not_sent_at_stop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on this server's port: every try fails.
    down = MailServer()
    queue = MailQueue(SmtpConfig.model_validate(down.site()))
    tried = threading.Event()
    real = queue.transport

    class Counting:
        def send(self, mail: Mail) -> None:
            try:
                real.send(mail)
            finally:
                tried.set()

    queue.transport = Counting()
    queue.post(_mail("ci@example.org", "never delivered"))
    assert tried.wait(10)
    with caplog.at_level(logging.ERROR, "gatekeeper.scheduler.mail"):
        queue.stop()
    assert "stopped before this mail was sent" in caplog.text
    assert "never delivered" in caplog.text and "ci@example.org" in caplog.text


def test_validate_with_a_site_file_checks_the_smtp_reporters(tmp_path: Path) -> None:
    layout = _layout(tmp_path, "      smtp:\n        to: a@example.org\n")
    bare = tmp_path / "bare.yaml"
    bare.write_text("state-dir: state\n")
    result = CliRunner().invoke(main, ["validate", str(layout), "-c", str(bare)])
    assert result.exit_code == 1
    assert f"{layout}:8: pipelines[0].success.smtp: the site file has no 'smtp'" in result.output

    mailing = tmp_path / "mailing.yaml"
    mailing.write_text("smtp:\n  server: mail.example.org\n")
    result = CliRunner().invoke(main, ["validate", str(layout), "-c", str(mailing)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[MailServer]:
    """A mail server that takes mail only after STARTTLS, its certificate
    from a CA of its own (the site trusts it through ``ca-file``)."""
    create_ca(tmp_path / "ca")
    server = MailServer(tls=issue(tmp_path / "ca", Role.SERVER, "mail"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_starttls_with_the_sites_ca(tmp_path: Path, tls_server: MailServer) -> None:
    config = SmtpConfig.model_validate(
        tls_server.site(starttls=True, **{"ca-file": str(tmp_path / "ca" / "ca.pem")})
    )
    queue = MailQueue(config)
    try:
        queue.post(_mail("ci@example.org", "over TLS"))
        [received] = tls_server.wait_for(1)
        assert received.subject == "over TLS"
    finally:
        queue.stop()


def test_a_server_wanting_starttls_holds_the_mail_until_the_site_asks_for_it(
    tls_server: MailServer,
) -> None:
    """530 is the site's setting, not the mail's fault: kept, not dropped."""
    transport = SmtpTransport(SmtpConfig.model_validate(tls_server.site()))
    with pytest.raises(MailError, match=r"530.*starttls: true") as raised:
        transport.send(_mail("ci@example.org", "plain"))
    assert raised.value.permanent is False


def test_mail_unsent_at_stop_goes_out_after_the_restart(sqlite_db: Database) -> None:
    server = MailServer()
    config = SmtpConfig.model_validate(server.site())
    # The mail server is down while the daemon stops.
    before = MailQueue(config, outbox=MailOutbox(sqlite_db))
    before.post(_mail("ci@example.org", "kept over the restart"))
    before.stop()
    before.stop()  # a second stop keeps nothing twice

    server.start()
    try:
        after = MailQueue(config, outbox=MailOutbox(sqlite_db))
        after.resume()
        after.post(_mail("ci@example.org", "made after the restart"))
        received = server.wait_for(2)
        assert [m.subject for m in received] == ["kept over the restart", "made after the restart"]
        after.stop()
        # Sent, so not kept again: a third start has nothing to send.
        assert MailOutbox(sqlite_db).take() == []
    finally:
        server.stop()
