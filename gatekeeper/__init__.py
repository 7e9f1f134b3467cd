"""gatekeeper: a gating CI system for Gerrit."""

__version__ = "0.1.0"
