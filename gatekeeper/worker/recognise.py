"""The worker's scan step: a failed build's archived logs searched for the
site's known failures, the matches stored, and the ones found carried back
in the build's result so its report can name them.

The scan runs in the build's thread after the node is released and before
the result is sent, so it delays the report; :data:`SCAN_SECONDS` bounds by
how much. RE2 is linear in the text, and the collected logs are capped by
``worker.log-max-bytes`` (300 MiB by default), which the scanner reads in
well under that bound on one core; a scan the deadline stops keeps what it
found and says so in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from gatekeeper.db.engine import Database
from gatekeeper.errors import ConfigError
from gatekeeper.insights.known_failures import record_matches
from gatekeeper.insights.scanner import Scanner
from gatekeeper.insights.signatures import SignatureSet, load_signatures
from gatekeeper.model.outside import shown
from gatekeeper.model.results import Recognised

log = logging.getLogger(__name__)

#: The longest a failed build's report waits for its logs to be searched.
SCAN_SECONDS = 30.0


class FailureRecogniser:
    """The site's signatures and the scanners made of them. Owned by the
    worker; :meth:`recognise` is called from its build threads,
    :meth:`reload` from the thread that reconfigures (each swaps or reads
    whole objects, so neither needs a lock).

    :raises ConfigError: (constructor) a signature file does not load.
    """

    def __init__(self, directory: Path, db: Database | None, seconds: float = SCAN_SECONDS) -> None:
        self.directory = directory
        self.db = db
        self.seconds = seconds
        self._signatures = load_signatures(directory)
        self._scanners: dict[tuple[str, ...], Scanner] = {}
        self._lock = threading.Lock()

    @property
    def signatures(self) -> SignatureSet:
        return self._signatures

    def reload(self) -> bool:
        """Load the signatures again; a directory that does not load is
        logged and the current signatures stay. Returns whether it took."""
        try:
            signatures = load_signatures(self.directory)
        except ConfigError as exc:
            log.error("known failures: %s; keeping the current signatures", exc)
            return False
        with self._lock:
            self._signatures = signatures
            self._scanners = {}
        return True

    def _scanner(self, job: str, project: str, branch: str) -> Scanner | None:
        with self._lock:
            signatures = self._signatures.for_build(job, project, branch)
            if not signatures:
                return None
            key = tuple(s.id for s in signatures)
            scanner = self._scanners.get(key)
            if scanner is None:
                scanner = self._scanners[key] = Scanner(signatures)
            return scanner

    def recognise(
        self, uuid: str, log_dir: Path, job: str, project: str, branch: str
    ) -> list[Recognised]:
        """The known failures in the logs of build ``uuid``, stored in the
        database (a database that refuses is logged: the report still names them)."""
        scanner = self._scanner(job, project, branch)
        if scanner is None:
            return []
        started = time.monotonic()
        result = scanner.scan(log_dir, deadline=started + self.seconds)
        took = time.monotonic() - started
        for problem in result.problems:
            log.warning("build %s: known failures: %s", uuid, shown(problem))
        if not result.complete:
            log.warning(
                "build %s: the search for known failures stopped after %.0fs (%d files, %d bytes)",
                uuid,
                self.seconds,
                result.files,
                result.bytes,
            )
        log.info(
            "build %s: %d known failures in %d files (%d bytes, %.2fs)",
            uuid,
            len(result.signatures),
            result.files,
            result.bytes,
            took,
        )
        if self.db is not None:
            try:
                record_matches(self.db, uuid, result.matches)
            except Exception:
                log.exception("build %s: could not store its known failures", uuid)
        found = []
        for signature_id in result.signatures:
            signature = next(s for s in scanner.signatures if s.id == signature_id)
            found.append(Recognised(signature.id, signature.description, signature.bug))
        return found
