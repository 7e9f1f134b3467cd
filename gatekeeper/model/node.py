"""Nodes and images as plain data: their states, and what a provider
reports about a machine it made ready.

Node states::

    BUILDING ──▶ READY ──claim──▶ USED ──other results──▶ DELETE ──▶ DELETING ──gone──▶ (row gone)
                                   └──FAILURE, TIMED_OUT──▶ HOLD ──hold_until, hold-max──▶ DELETE

A static node is returned to READY after a passing build instead of being
deleted (its host is cleaned, not destroyed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class NodeState(StrEnum):
    BUILDING = "BUILDING"
    READY = "READY"
    USED = "USED"
    HOLD = "HOLD"
    DELETE = "DELETE"
    #: The delete was sent; the row goes once the server is seen gone.
    DELETING = "DELETING"


class ImageState(StrEnum):
    BUILDING = "BUILDING"
    READY = "READY"
    DELETE = "DELETE"
    FAILED = "FAILED"


@dataclass
class LaunchedNode:
    """What a provider reports about a machine it has made ready."""

    external_id: str
    address: str = ""
    port: int = 22
    username: str = ""
    #: known_hosts lines for the node, as seen when it first answered.
    host_keys: str = ""
    #: Where the cloud says it runs ("" where the provider reports nothing).
    region: str = ""
    availability_zone: str = ""
