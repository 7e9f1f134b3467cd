"""Faults of ``gerrit review`` that tests ask for: a review that stalls, and
a review that runs but whose answer never comes back.

Set from the test thread (through :class:`GerritSimulator`), read by the
server's exec threads; guarded by its own lock.
"""

from __future__ import annotations

import logging
import threading

from gatekeeper.sandbox.gerrit_sim import review
from gatekeeper.sandbox.gerrit_sim.options import UsageError

log = logging.getLogger(__name__)


def review_change(argv: list[str]) -> tuple[int, bool] | None:
    """(change number, whether it submits) of a ``gerrit review CHANGE,PATCHSET``;
    None for any other command."""
    if argv[:2] != ["gerrit", "review"]:
        return None
    try:
        args = review.parse(argv[2:])
    except UsageError:
        return None
    for target in args.targets:
        number, comma, _ = target.partition(",")
        if comma and number.isdigit():
            return int(number), args.submit
    return None


class Faults:
    """What the server does wrong on purpose, per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Change -> (whose reviews stall, '' for anyone's; released when set).
        self._held: dict[int, tuple[str, threading.Event]] = {}
        self._stalled: dict[int, int] = {}
        self._cut_after_submit: set[int] = set()

    def hold_reviews(self, change: int, username: str = "") -> None:
        with self._lock:
            self._held.setdefault(change, (username, threading.Event()))

    def release_reviews(self, change: int) -> None:
        with self._lock:
            held = self._held.pop(change, None)
        if held is not None:
            held[1].set()

    def release_all(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for _, gate in held:
            gate.set()

    def stalled(self, change: int) -> int:
        with self._lock:
            return self._stalled.get(change, 0)

    def cut_after_submit(self, change: int) -> None:
        with self._lock:
            self._cut_after_submit.add(change)

    def admit(self, argv: list[str], username: str) -> bool:
        """Whether to run ``argv`` (sent by ``username``) now. A held review
        stalls until released and is then dropped (False): it never ran."""
        target = review_change(argv)
        if target is None:
            return True
        with self._lock:
            whose, gate = self._held.get(target[0], ("", None))
            if gate is not None and whose not in ("", username):
                gate = None
            if gate is not None:
                self._stalled[target[0]] = self._stalled.get(target[0], 0) + 1
        if gate is None:
            return True
        log.info("gerrit review of change %d stalls (a test holds it)", target[0])
        gate.wait()
        log.info("the stalled gerrit review of change %d is dropped", target[0])
        return False

    def cut_after(self, argv: list[str]) -> bool:
        """Whether to drop the connection instead of answering ``argv``, which ran
        (once: the first submit of a change marked by :meth:`cut_after_submit`)."""
        target = review_change(argv)
        if target is None or not target[1]:
            return False
        with self._lock:
            if target[0] not in self._cut_after_submit:
                return False
            self._cut_after_submit.discard(target[0])
        return True
