"""Event sources: each is a class with ``run(sink)`` and ``stop()``, the
:class:`~gatekeeper.model.listener.Listener` seam.

The core never imports a listener: the ``gatekeeper`` command (and the
sandbox, which stands in for it) picks one and hands it to the app. A
listener imports only :mod:`gatekeeper.model`, :mod:`gatekeeper.gerrit` and
:mod:`gatekeeper.errors` (import-linter keeps both true).
"""
