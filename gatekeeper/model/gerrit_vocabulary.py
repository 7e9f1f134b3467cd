"""Gerrit's event vocabulary: the event types it documents, and who causes each.

Here, below both, because two rooms need it: ``config`` checks that a
trigger's ``event:`` names a real type, and ``gerrit`` reads events and
skips types it does not know. Plain data, no I/O.
"""

from __future__ import annotations

__all__ = ["ACCOUNT_FIELDS", "KNOWN_TYPES", "MAX_EVENT_BYTES"]

#: The longest stream-events line read by default (``gerrit.max-event-bytes``).
#: Every event about a change carries its whole commit message, and Gerrit
#: sets no size limit on a commit by default (``receive.maxObjectSizeLimit``
#: is unset): commit messages of several megabytes are real. A longer line
#: is not read but counted and skipped, and starts a catch-up.
MAX_EVENT_BYTES = 32 * 1024 * 1024

#: Which attribute names the account that caused each event type.
ACCOUNT_FIELDS: dict[str, str] = {
    "patchset-created": "uploader",
    "draft-published": "uploader",
    "comment-added": "author",
    "change-merged": "submitter",
    "merge-failed": "submitter",
    "ref-updated": "submitter",
    # 3.x: every ref operation, listing each ref it moved (refUpdates).
    "batch-ref-updated": "submitter",
    "change-abandoned": "abandoner",
    "change-restored": "restorer",
    "change-deleted": "deleter",
    "reviewer-added": "reviewer",
    "reviewer-deleted": "remover",
    "vote-deleted": "remover",
    "topic-changed": "changer",
    "hashtags-changed": "editor",
    "assignee-changed": "changer",
    "wip-state-changed": "changer",
    "private-state-changed": "changer",
}
#: Every event type Gerrit (2.13 and 3.x, and its replication plugin)
#: documents. A listener skips others, with a warning: a type we do not know
#: cannot be routed right. Each may be named by a trigger's ``event``; a type
#: no pipeline names starts nothing.
KNOWN_TYPES = frozenset(
    {
        *ACCOUNT_FIELDS,
        "project-created",
        "project-head-updated",
        "ref-replicated",
        "ref-replication-done",
        "ref-replication-scheduled",
        "dropped-output",
    }
)
