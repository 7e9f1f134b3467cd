"""The listener seam."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gatekeeper.model.events import TriggerEvent

Sink = Callable[[TriggerEvent], None]


class Listener(Protocol):
    """Turns an outside event stream into TriggerEvents.

    ``run`` blocks in the listener's own thread until ``stop`` is called.
    """

    def run(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...
