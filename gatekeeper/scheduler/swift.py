"""Signed Swift upload URLs for a job's ``swift:`` targets, as Zuul v2.5 gave them.

For each target ``<name>`` a build gets the fields of a Swift FormPost form
(the ``formpost`` middleware's temporary-URL upload) as parameters:

``SWIFT_<name>_URL``
    where to POST: storage URL / container / file path prefix / LOG_PATH
``SWIFT_<name>_HMAC_BODY``
    what was signed: ``<path of URL>\\n<redirect>\\n<max size>\\n<max count>\\n<expires>``
    (no redirect, so the second line is empty)
``SWIFT_<name>_SIGNATURE``
    HMAC-SHA1 of the body with the account's temp-URL key, in hex
``SWIFT_<name>_LOGSERVER_PREFIX``
    where the files are served, when the target or the site says

These four are Zuul v2.5's. gatekeeper adds the form's other fields, which
Zuul's upload scripts read back out of the HMAC body:
``SWIFT_<name>_EXPIRY`` (the Unix time the signature expires),
``_MAX_FILE_SIZE``, ``_MAX_FILE_COUNT`` and ``_CONTAINER``.

A job with targets on a site without a ``swift:`` section gets none of
them; :func:`unsigned_targets` names those jobs so the daemon logs it when
it loads the layout (Zuul v2.5 left them out silently).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import SwiftTarget
from gatekeeper.config.loader import format_error
from gatekeeper.config.site import SwiftConfig
from gatekeeper.model.patterns import fill

__all__ = ["SwiftSigner", "unsigned_targets"]


def _join(*parts: str) -> str:
    """URL parts joined by one ``/`` each, empty parts left out."""
    kept = [p for p in parts if p.strip("/")]
    if not kept:
        return ""
    return "/".join([kept[0].rstrip("/"), *(p.strip("/") for p in kept[1:])])


class SwiftSigner:
    """Makes ``SWIFT_*`` parameters from the site's ``swift:`` section.

    Built once at start (the key read then); immutable, used in the scheduler thread.
    """

    def __init__(self, config: SwiftConfig, key: str, clock: Callable[[], float] = time.time):
        self.config = config
        self._key = key.encode()
        self._clock = clock

    @classmethod
    def from_config(cls, config: SwiftConfig) -> SwiftSigner:
        """:raises ConfigError: the key file cannot be read."""
        return cls(config, config.secret())

    def sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha1).hexdigest()

    def params(
        self, targets: list[SwiftTarget], log_path: str, value: Callable[[str], str]
    ) -> dict[str, str]:
        """Every target's parameters for a build whose ``LOG_PATH`` is ``log_path``;
        ``value`` fills the placeholders of a target's container and logserver prefix."""
        config = self.config
        out: dict[str, str] = {}
        for target in targets:
            container = fill(
                target.container if target.container is not None else config.default_container,
                value,
            )
            expiry = target.expiry if target.expiry is not None else config.default_expiry
            size = target.max_file_size or config.default_max_file_size
            count = target.max_file_count or config.default_max_file_count
            prefix = (
                target.logserver_prefix
                if target.logserver_prefix is not None
                else config.default_logserver_prefix
            )
            expires = int(self._clock() + expiry)
            url = _join(config.storage_url, container, config.default_file_path_prefix, log_path)
            body = f"{urlsplit(url).path}\n\n{size}\n{count}\n{expires}"
            name = f"SWIFT_{target.name}_"
            out[name + "URL"] = url
            out[name + "HMAC_BODY"] = body
            out[name + "SIGNATURE"] = self.sign(body)
            if prefix:
                out[name + "LOGSERVER_PREFIX"] = fill(prefix, value)
            out[name + "EXPIRY"] = str(expires)
            out[name + "MAX_FILE_SIZE"] = str(size)
            out[name + "MAX_FILE_COUNT"] = str(count)
            out[name + "CONTAINER"] = container
        return out


def unsigned_targets(layout: Layout) -> list[str]:
    """One ``file:line: key: message`` line per ``jobs:`` entry with ``swift:``
    targets, for a site without a ``swift:`` section (their builds get no
    ``SWIFT_*`` parameters)."""
    lines = []
    for index, job in enumerate(layout.config.jobs):
        if not job.swift:
            continue
        names = ", ".join(t.name for t in job.swift)
        lines.append(
            format_error(
                layout.file,
                layout.marks,
                ("jobs", index, "swift"),
                f"the site has no 'swift:' section: builds of '{job.name}' get no "
                f"SWIFT_* parameters for {names}",
            )
        )
    return lines
