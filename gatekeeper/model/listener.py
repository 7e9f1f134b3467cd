"""The listener seam: what the core knows of an event source.

It lives here, below every room, so that the app can run whichever listener
the command line picked (see :mod:`listeners`) without importing one, and so
that listeners need nothing of the core above the model, Gerrit and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gatekeeper.model.events import TriggerEvent

#: Where a listener (or a Gerrit catch-up) hands each event it turned out.
Sink = Callable[[TriggerEvent], None]


class Listener(Protocol):
    """Turns an outside event stream into TriggerEvents.

    ``run`` blocks in the listener's own thread until ``stop`` is called.
    """

    def run(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...
