"""Event sources. Each is a class with ``run(sink)`` and ``stop()``.

The core never imports a listener; the CLI picks one by name from
:data:`LISTENERS`.
"""

from __future__ import annotations

from listeners.base import Listener, Sink

__all__ = ["Listener", "Sink"]
