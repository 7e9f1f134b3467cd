"""SMTP reporters: a pipeline's reports as mail, sent off the scheduler thread.

A reporter's ``smtp:`` part (``to``, ``from``, ``subject``) makes the report
a mail; the site file's ``smtp:`` section says which server takes it and who
it is from and to when the layout does not say. The subject may use Zuul
v2.5's placeholders (``{change}``, ``{change.number}``, ``{change.patchset}``,
``{change.project}``...) and ``{pipeline.name}``; the body is the report's
message, as Gerrit gets it.

The scheduler thread only composes a :class:`Mail` and hands it to the
:class:`MailQueue`; its ``mailer`` thread talks to the server. A server that
is down or answers "try later" (4xx) is tried again, the wait doubling up to
``retry-max``, for as long as the daemon runs; the mails behind wait their
turn, so they go out in the order they were made. A mail the server refuses
for good (5xx) is logged and dropped, so it cannot hold up the rest. At
shutdown, mail not yet sent is kept in the database and sent first at the
next start.
"""

from __future__ import annotations

import dataclasses
import logging
import smtplib
import ssl
import string
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.config.loader import format_error
from gatekeeper.config.site import SmtpConfig, mail_addresses
from gatekeeper.db.mail_outbox import MailOutbox
from gatekeeper.errors import ConfigError, GatekeeperError
from gatekeeper.model.change import Change
from gatekeeper.model.outside import shown

if TYPE_CHECKING:
    from gatekeeper.config.layout import Layout
    from gatekeeper.config.layout_schema import PipelineConfig, SmtpReporter

log = logging.getLogger(__name__)

#: Zuul v2.5's subject when the reporter names none.
DEFAULT_SUBJECT = "Report for change {change}"
#: The longest subject sent (characters); outside text beyond it is cut.
SUBJECT_MAX = 200
#: Each placeholder's value is cut to this many characters.
FIELD_MAX = 120

#: The reporter keys each layout location may hold (for error messages).
_EVENTS = ("start", "success", "failure", "merge-failure", "disabled")


class MailError(GatekeeperError):
    """The server did not take a mail. ``permanent``: it refused it for good
    (a 5xx answer); otherwise it may take it later."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# -- placeholders -----------------------------------------------------------


def _change_fields(change: Change) -> dict[str, object]:
    """What ``{change.<name>}`` may name; Zuul v2.5's change attributes."""
    return {
        "number": change.number,
        "patchset": change.patchset,
        "project": change.project,
        "branch": change.branch,
        "ref": change.ref,
        "id": change.change_id,
        "url": change.url,
        "subject": change.subject,
        "owner": change.owner,
        "oldrev": change.old_rev,
        "newrev": change.new_rev,
    }


def _pipeline_fields(pipeline: PipelineConfig) -> dict[str, object]:
    return {"name": pipeline.name, "description": pipeline.description}


class _Namespace:
    """``{change}`` alone, and the names after its dot."""

    def __init__(self, whole: str, fields: Mapping[str, object]) -> None:
        self.whole = whole
        self.fields = fields

    def __str__(self) -> str:
        return self.whole


class _Placeholders(string.Formatter):
    """``str.format`` that reaches only the fields named in a namespace: a
    template is the layout's, but its values come from outside (a commit
    subject), and no template may walk from them into other attributes."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        head, _, rest = field_name.partition(".")
        space = kwargs.get(head)
        if not isinstance(space, _Namespace) or "[" in field_name or "." in rest:
            raise KeyError(field_name)
        if not rest:
            return space.whole, head
        if rest not in space.fields:
            raise KeyError(field_name)
        return shown(space.fields[rest], FIELD_MAX), head


def _namespaces(change: Change, pipeline: PipelineConfig) -> dict[str, _Namespace]:
    whole = change.ref if change.is_ref else f"{change.number},{change.patchset}"
    return {
        "change": _Namespace(shown(whole, FIELD_MAX), _change_fields(change)),
        "pipeline": _Namespace(shown(pipeline.name, FIELD_MAX), _pipeline_fields(pipeline)),
    }


def render_subject(template: str, change: Change, pipeline: PipelineConfig) -> str:
    """The subject line: ``template`` with its placeholders filled, on one line.

    :raises ConfigError: a placeholder this module does not know.
    """
    try:
        text = _Placeholders().vformat(template, (), _namespaces(change, pipeline))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"subject {template!r}: {_placeholder_error(exc)}") from exc
    # Every value was shown() (one line); the template itself may not be.
    return shown(text, SUBJECT_MAX)


def _placeholder_error(exc: Exception) -> str:
    if isinstance(exc, KeyError | IndexError):
        known = ", ".join(
            ["{change}", "{pipeline}"]
            + [f"{{change.{n}}}" for n in _change_fields(_SAMPLE)]
            + [f"{{pipeline.{n}}}" for n in ("name", "description")]
        )
        return f"unknown placeholder {{{exc.args[0]}}} (known: {known})"
    return str(exc)


_SAMPLE = Change(project="p", branch="master", number=1, patchset=1)


# -- one mail -----------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """One mail to send. Built in the scheduler thread, sent by the mailer
    thread; immutable so the two share nothing that changes."""

    sender: str
    to: str
    subject: str
    body: str
    #: What it reports, for the log: ``check 1234,2 failure``.
    about: str = ""

    @property
    def recipients(self) -> list[str]:
        return mail_addresses(self.to)

    def message(self) -> EmailMessage:
        """The message, its headers set through :class:`EmailMessage`, which
        refuses a header value with a line break in it (none can be forged)."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to
        message["Subject"] = self.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=_domain(self.sender))
        # RFC 3834: no vacation replies to a robot.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self.body)
        return message


def _domain(address: str) -> str:
    bare = mail_addresses(address)[0]
    return bare.rpartition("@")[2] or "localhost"


def compose_mail(
    smtp: SmtpConfig,
    action: SmtpReporter,
    pipeline: PipelineConfig,
    change: Change,
    kind: str,
    message: str,
) -> Mail:
    """The mail an ``smtp:`` reporter sends for a report of ``kind``.

    :raises ConfigError: no recipient (neither the reporter nor the site
        names one), or an unknown placeholder; the layout check
        (:func:`check_layout`) finds both before any report is made.
    """
    to = action.to or smtp.default_to
    if not to:
        raise ConfigError(f"pipeline {pipeline.name}: an smtp reporter names no 'to'")
    subject = render_subject(action.subject or DEFAULT_SUBJECT, change, pipeline)
    what = change.ref if change.is_ref else change.key
    return Mail(
        sender=action.from_ or smtp.default_from,
        to=to,
        subject=subject,
        body=message,
        about=f"{pipeline.name} {change.project} {what} {kind}",
    )


def check_layout(layout: Layout, smtp: SmtpConfig | None) -> list[str]:
    """Every problem with the layout's smtp reporters under this site's
    ``smtp`` section, as ``file:line: key: message`` lines: an smtp reporter
    with no ``smtp`` section in the site file (its mail would go nowhere),
    one with no recipient, a bad address, an unknown placeholder."""
    errors: list[str] = []
    for index, pipeline in enumerate(layout.pipelines):
        for event in _EVENTS:
            reporter = getattr(pipeline, event.replace("-", "_"))
            if reporter is None or reporter.smtp is None:
                continue
            action: SmtpReporter = reporter.smtp
            path = ("pipelines", index, event, "smtp")

            def error(key: str | None, message: str, path: tuple[Any, ...] = path) -> None:
                where = (*path, key) if key else path
                errors.append(format_error(layout.file, layout.marks, where, message))

            if smtp is None:
                error(
                    None,
                    "the site file has no 'smtp' section (server, port, default-from, "
                    "default-to, starttls): this mail would go nowhere",
                )
                continue
            if not (action.to or smtp.default_to):
                error(None, "no 'to', and the site file's smtp section has no 'default-to'")
            for key, value in (("to", action.to), ("from", action.from_)):
                if value is None:
                    continue
                try:
                    mail_addresses(value)
                except ValueError as exc:
                    error(key, str(exc))
            try:
                render_subject(action.subject or DEFAULT_SUBJECT, _SAMPLE, pipeline)
            except ConfigError as exc:
                error("subject", str(exc).partition(": ")[2])
    return errors


# -- sending --------------------------------------------------------------------


class MailTransport(Protocol):
    """The seam: hand one mail to the server.

    :raises MailError: it was not taken (``permanent`` when it never will be).
    """

    def send(self, mail: Mail) -> None: ...


class SmtpTransport:
    """Sends with :mod:`smtplib`, one SMTP conversation per mail (reports are
    few; a connection kept open would only time out between them)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, mail: Mail) -> None:
        config = self.config
        try:
            with smtplib.SMTP(config.server, config.port, timeout=config.timeout) as client:
                if config.starttls:
                    cafile = str(config.ca_file) if config.ca_file is not None else None
                    client.starttls(context=ssl.create_default_context(cafile=cafile))
                refused = client.send_message(
                    mail.message(),
                    from_addr=mail_addresses(mail.sender)[0],
                    to_addrs=mail.recipients,
                )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise MailError(
                f"every recipient refused: {_answers(exc.recipients)}",
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            answer = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
            # 530 (STARTTLS or authentication first) is this site's setting,
            # not this mail's fault: every mail would get it until it is fixed.
            site = exc.smtp_code == 530
            raise MailError(
                f"{config.server}:{config.port} answered {exc.smtp_code} {answer}"
                + (" (does the server want smtp.starttls: true?)" if site else ""),
                permanent=exc.smtp_code >= 500 and not site,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{config.server}:{config.port}: {exc}") from exc
        if refused:
            log.warning("mail %s: refused for %s", mail.about, _answers(refused))


def _answers(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {text.decode('utf-8', 'replace')})"
        for address, (code, text) in refused.items()
    )


class MailQueue:
    """Sends mail in its own thread, ``mailer`` (started on first use).

    :meth:`post` is called from the scheduler thread and never waits on the
    server. Mails go out one at a time, in order; one the server did not take
    is tried again after ``retry`` seconds, doubled per try up to
    ``retry_max``, until it is taken, refused for good, or the daemon stops.
    """

    def __init__(
        self,
        config: SmtpConfig,
        transport: MailTransport | None = None,
        outbox: MailOutbox | None = None,
    ) -> None:
        #: The site's smtp section: the defaults every mail is composed with.
        self.config = config
        self.transport: MailTransport = transport or SmtpTransport(config)
        #: Where mail unsent at stop is kept for the next start (None: logged only).
        self.outbox = outbox
        self.retry = config.retry
        self.retry_max = config.retry_max
        self._waiting: deque[Mail] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Mails taken by the server, and given up (refused for good), since start.
        self.sent = 0
        self.dropped = 0

    def report(
        self,
        pipeline: PipelineConfig,
        action: SmtpReporter,
        change: Change,
        kind: str,
        message: str,
    ) -> None:
        """Compose the mail of an smtp reporter's report and queue it
        (scheduler thread); a mail that cannot be composed is logged."""
        try:
            mail = compose_mail(self.config, action, pipeline, change, kind, message)
        except ConfigError as exc:
            log.error("no mail for the %s report on %s in %s: %s", kind, change, pipeline.name, exc)
            return
        self.post(mail)

    def post(self, mail: Mail) -> None:
        """Queue ``mail`` (any thread)."""
        with self._lock:
            self._waiting.append(mail)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="mailer", daemon=True)
                self._thread.start()
        self._wake.set()

    def waiting(self) -> list[Mail]:
        """The mails not sent yet, the next first."""
        with self._lock:
            return list(self._waiting)

    def resume(self) -> None:
        """Queue the mail the last run kept, before any new (at start)."""
        if self.outbox is None:
            return
        kept: list[Mail] = []
        for fields in self.outbox.take():
            try:
                kept.append(Mail(**fields))
            except TypeError:
                log.error("a kept mail is unreadable, lost: %s", shown(fields))
        if kept:
            log.info("sending %d mails kept from before the restart", len(kept))
        for mail in kept:
            self.post(mail)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (a conversation under way may finish, within
        ``timeout``); mail not sent by then is kept in the outbox for the next
        start (one whose conversation was cut may then arrive twice), or,
        without one, logged, one line each."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        unsent = self.waiting()
        if unsent and self.outbox is not None:
            try:
                self.outbox.keep([dataclasses.asdict(mail) for mail in unsent])
            except Exception:
                log.exception("could not keep %d unsent mails", len(unsent))
            else:
                log.warning("kept %d unsent mails for the next start", len(unsent))
                with self._lock:
                    # Kept once: a second stop must not keep them again.
                    self._waiting.clear()
                return
        for mail in unsent:
            log.error(
                "stopped before this mail was sent: %s to %s: %s",
                mail.about,
                shown(mail.to),
                shown(mail.subject),
            )

    def _run(self) -> None:
        tries = 0
        while not self._stop.is_set():
            with self._lock:
                mail = self._waiting[0] if self._waiting else None
                if mail is None:
                    self._wake.clear()
            if mail is None:
                self._wake.wait()
                continue
            tries += 1
            try:
                self._send_one(mail, tries)
                tries = 0
                continue
            except MailError:
                pass  # logged; tried again after the wait
            except Exception:
                # A bug, not the server: keep the mail and keep the thread.
                log.exception("mailer: sending %s failed", mail.about)
            self._stop.wait(self._delay(tries))

    def _send_one(self, mail: Mail, tries: int) -> None:
        """Send the head mail; it leaves the queue when it was taken or
        refused for good. :raises MailError: when it is to be tried again."""
        try:
            self.transport.send(mail)
        except MailError as exc:
            if not exc.permanent:
                log.warning(
                    "mail %s not sent (try %d; again in %.0fs): %s",
                    mail.about,
                    tries,
                    self._delay(tries),
                    shown(exc),
                )
                raise
            log.error("mail %s refused for good, dropped: %s", mail.about, shown(exc))
            self.dropped += 1
        else:
            log.info("mail sent: %s to %s", mail.about, shown(mail.to))
            self.sent += 1
        with self._lock:
            self._waiting.popleft()

    def _delay(self, tries: int) -> float:
        return float(min(self.retry * 2 ** max(0, tries - 1), self.retry_max))
