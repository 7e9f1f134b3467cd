"""Reaching a node: the transports (local, SSH) and the one SSH connect.

Below ``db``, ``gerrit``, ``pool`` and ``worker``, which all use it; it
imports only ``config``, ``model`` and ``errors``.
"""
