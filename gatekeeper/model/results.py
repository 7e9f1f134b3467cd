"""Events the scheduler receives about its own builds and from operators."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.dispatch.protocol import CompleteData, StartData


@dataclass
class BuildStarted:
    uuid: str
    data: StartData


@dataclass
class BuildCompleted:
    uuid: str
    data: CompleteData


ResultEvent = BuildStarted | BuildCompleted
