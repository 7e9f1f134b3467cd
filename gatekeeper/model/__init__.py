"""Plain data shared by every component: events, changes, queue items, builds. No I/O."""

from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, MergeState, QueueItem
from gatekeeper.model.events import Account, Approval, TriggerEvent

__all__ = [
    "Account",
    "Approval",
    "Build",
    "BuildResult",
    "Change",
    "MergeState",
    "QueueItem",
    "TriggerEvent",
]
