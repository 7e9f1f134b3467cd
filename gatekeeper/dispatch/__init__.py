"""Gearman: the embedded server, and the client that carries builds to workers."""
