"""A Gerrit simulator for tests and the sandbox demo (see :class:`GerritSimulator`)."""

from __future__ import annotations

from gatekeeper.sandbox.gerrit_sim.records import ReviewRecord, SimChange, SimMessage, SimPatchset
from gatekeeper.sandbox.gerrit_sim.simulator import GerritSimulator

__all__ = ["GerritSimulator", "ReviewRecord", "SimChange", "SimMessage", "SimPatchset"]
