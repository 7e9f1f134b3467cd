"""Events and query rows in the wire shape of the dialect the simulator speaks.

What both dialects share: vote values are strings, timestamps are integer
seconds, and change events carry the undocumented top-level ``project``,
``refName`` and ``changeKey`` that Gerrit really sends. Where they differ
(from the 2.13 and 3.x ``json.txt`` and ``cmd-stream-events.txt``, and the
shapes real servers send):

========================== ======================== =========================
field                      2.13                     3.x
========================== ======================== =========================
change/patchSet ``number`` string of digits         integer
dependsOn/neededBy number  string of digits         integer
event ``change.createdOn`` absent                   present (query rows: both)
``patchSet.isDraft``       ``false``                absent (drafts gone, 2.15)
``hashtags`` (change)      absent                   list, in events and rows
``wip``/``private``        absent                   only when true
patchSet ``kind``          5 kinds                  + TRIVIAL_REBASE_WITH_
                                                    MESSAGE_UPDATE
a merge                    ``ref-updated``          ``ref-updated`` per ref and
                                                    one ``batch-ref-updated``
event types                reviewer-added/-deleted, + :data:`NEW_IN_3`
                           topic-changed,
                           hashtags-changed,
                           project-created
reviewer-added ``adder``   absent                   present
========================== ======================== =========================

``sizeDeletions`` (and a file's ``deletions``) is negative in both, as
Gerrit computes it. Callers hold ``SimState.lock``.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.sandbox.gerrit_sim.state import Change, PatchSet, SimState, now


def account_attr(state: SimState, username: str) -> dict[str, str]:
    account = state.accounts.get(username)
    if account is None:
        return {"username": username}
    return account.attr()


def author_attr(state: SimState, patchset: PatchSet) -> dict[str, str]:
    """The commit author, as an account when the email belongs to one."""
    account = state.account_by_email(patchset.commit.author_email)
    if account is not None:
        return account.attr()
    return {"name": patchset.commit.author_name, "email": patchset.commit.author_email}


def number(state: SimState, value: int) -> int | str:
    """A change or patch set number as the dialect sends it."""
    return value if state.dialect == "3" else str(value)


#: Event types 2.13 has no notion of; the simulator does not emit them there.
NEW_IN_3 = frozenset(
    {
        "batch-ref-updated",
        "project-head-updated",
        "wip-state-changed",
        "private-state-changed",
        "vote-deleted",
        "change-deleted",
    }
)


def patchset_attr(state: SimState, patchset: PatchSet) -> dict[str, Any]:
    commit = patchset.commit
    attr: dict[str, Any] = {
        "number": number(state, patchset.number),
        "revision": commit.sha,
        "parents": list(commit.parents),
        "ref": patchset.ref,
        "uploader": account_attr(state, patchset.uploader),
        "createdOn": patchset.created_on,
        "author": author_attr(state, patchset),
    }
    if state.dialect == "2.13":
        attr["isDraft"] = False
    return attr | {
        "kind": patchset.kind,
        "sizeInsertions": commit.insertions,
        "sizeDeletions": -commit.deletions,
    }


def change_attr(state: SimState, change: Change) -> dict[str, Any]:
    """The change attribute of an event (query rows add to it)."""
    current = change.current.commit
    attr: dict[str, Any] = {"project": change.project, "branch": change.branch}
    if change.topic:
        attr["topic"] = change.topic
    attr |= {
        "id": change.change_id,
        "number": number(state, change.number),
        "subject": current.subject,
        "owner": account_attr(state, change.owner),
        "url": state.change_url(change),
        "commitMessage": current.message,
    }
    if state.dialect == "3":
        attr["hashtags"] = list(change.hashtags)
        attr["createdOn"] = change.created_on
        if change.wip:
            attr["wip"] = True
        if change.private:
            attr["private"] = True
    attr["status"] = change.status
    return attr


def _change_event(
    state: SimState,
    kind: str,
    head: dict[str, Any],
    change: Change,
    patchset: PatchSet,
) -> dict[str, Any]:
    event = dict(head)
    event["patchSet"] = patchset_attr(state, patchset)
    event["change"] = change_attr(state, change)
    event["project"] = change.project
    event["refName"] = f"refs/heads/{change.branch}"
    event["changeKey"] = {"id": change.change_id}
    event["type"] = kind
    event["eventCreatedOn"] = now()
    return event


def patchset_created(state: SimState, change: Change, patchset: PatchSet) -> dict[str, Any]:
    head = {"uploader": account_attr(state, patchset.uploader)}
    return _change_event(state, "patchset-created", head, change, patchset)


def comment_added(
    state: SimState,
    change: Change,
    patchset: PatchSet,
    author: str,
    comment: str,
    approvals: list[dict[str, str]],
) -> dict[str, Any]:
    head: dict[str, Any] = {"author": account_attr(state, author)}
    if approvals:
        head["approvals"] = approvals
    head["comment"] = comment
    return _change_event(state, "comment-added", head, change, patchset)


def change_merged(state: SimState, change: Change, submitter: str, new_rev: str) -> dict[str, Any]:
    head = {"submitter": account_attr(state, submitter), "newRev": new_rev}
    return _change_event(state, "change-merged", head, change, change.current)


def change_abandoned(state: SimState, change: Change, who: str, reason: str) -> dict[str, Any]:
    head = {"abandoner": account_attr(state, who), "reason": reason}
    return _change_event(state, "change-abandoned", head, change, change.current)


def change_restored(state: SimState, change: Change, who: str, reason: str) -> dict[str, Any]:
    head = {"restorer": account_attr(state, who), "reason": reason}
    return _change_event(state, "change-restored", head, change, change.current)


def ref_updated(
    state: SimState, project: str, ref: str, old_rev: str, new_rev: str, submitter: str
) -> dict[str, Any]:
    return {
        "submitter": account_attr(state, submitter),
        "refUpdate": {"oldRev": old_rev, "newRev": new_rev, "refName": ref, "project": project},
        "type": "ref-updated",
        "eventCreatedOn": now(),
    }


def ref_updates(
    state: SimState, project: str, updates: list[tuple[str, str, str]], submitter: str
) -> list[dict[str, Any]]:
    """The events one ref operation causes; ``updates`` is (ref, old, new).

    Both dialects send a ``ref-updated`` per ref; 3.x then sends one
    ``batch-ref-updated`` with all of them as well (cmd-stream-events:
    listeners pick one kind or the other).
    """
    singles = [ref_updated(state, project, ref, old, new, submitter) for ref, old, new in updates]
    if state.dialect != "3" or not updates:
        return singles
    batch = {
        "submitter": account_attr(state, submitter),
        "refUpdates": [
            {"oldRev": old, "newRev": new, "refName": ref, "project": project}
            for ref, old, new in updates
        ],
        "type": "batch-ref-updated",
        "eventCreatedOn": now(),
    }
    return [*singles, batch]


def _change_only(
    state: SimState, kind: str, head: dict[str, Any], change: Change, with_patchset: bool
) -> dict[str, Any]:
    if with_patchset:
        return _change_event(state, kind, head, change, change.current)
    event = dict(head)
    event["change"] = change_attr(state, change)
    event["project"] = change.project
    event["refName"] = f"refs/heads/{change.branch}"
    event["changeKey"] = {"id": change.change_id}
    event["type"] = kind
    event["eventCreatedOn"] = now()
    return event


def topic_changed(state: SimState, change: Change, who: str, old_topic: str) -> dict[str, Any]:
    head = {"changer": account_attr(state, who), "oldTopic": old_topic}
    return _change_only(state, "topic-changed", head, change, with_patchset=False)


def hashtags_changed(
    state: SimState, change: Change, who: str, added: list[str], removed: list[str]
) -> dict[str, Any]:
    head: dict[str, Any] = {"editor": account_attr(state, who)}
    if added:
        head["added"] = added
    if removed:
        head["removed"] = removed
    head["hashtags"] = list(change.hashtags)
    return _change_only(state, "hashtags-changed", head, change, with_patchset=False)


def state_changed(state: SimState, kind: str, change: Change, who: str) -> dict[str, Any]:
    """``wip-state-changed`` or ``private-state-changed``."""
    head = {"changer": account_attr(state, who)}
    return _change_only(state, kind, head, change, with_patchset=True)


def reviewer_added(state: SimState, change: Change, reviewer: str, adder: str) -> dict[str, Any]:
    head: dict[str, Any] = {"reviewer": account_attr(state, reviewer)}
    if state.dialect == "3":
        head["adder"] = account_attr(state, adder)
    return _change_only(state, "reviewer-added", head, change, with_patchset=True)


def reviewer_deleted(
    state: SimState,
    change: Change,
    reviewer: str,
    remover: str,
    approvals: list[dict[str, Any]],
    comment: str,
) -> dict[str, Any]:
    # 2.13 names the remover ``author``; 3.x ``remover``.
    who = "remover" if state.dialect == "3" else "author"
    head: dict[str, Any] = {
        "reviewer": account_attr(state, reviewer),
        who: account_attr(state, remover),
        "approvals": approvals,
        "comment": comment,
    }
    return _change_only(state, "reviewer-deleted", head, change, with_patchset=True)


def vote_deleted(
    state: SimState,
    change: Change,
    reviewer: str,
    remover: str,
    approvals: list[dict[str, Any]],
    comment: str,
) -> dict[str, Any]:
    head: dict[str, Any] = {
        "reviewer": account_attr(state, reviewer),
        "remover": account_attr(state, remover),
        "approvals": approvals,
        "comment": comment,
    }
    return _change_only(state, "vote-deleted", head, change, with_patchset=True)


def change_deleted(state: SimState, change: Change, who: str) -> dict[str, Any]:
    head = {"deleter": account_attr(state, who)}
    return _change_only(state, "change-deleted", head, change, with_patchset=False)


def project_created(state: SimState, project: str, head: str) -> dict[str, Any]:
    return {
        "projectName": project,
        "projectHead": head,
        "type": "project-created",
        "eventCreatedOn": now(),
    }


def project_head_updated(state: SimState, project: str, old: str, new: str) -> dict[str, Any]:
    return {
        "projectName": project,
        "oldHead": old,
        "newHead": new,
        "type": "project-head-updated",
        "eventCreatedOn": now(),
    }
