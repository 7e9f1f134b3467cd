"""Events and query rows in Gerrit 2.13's exact wire shape.

Numbers of changes and patch sets are strings (as up to 2.13), vote values
are strings, timestamps are integer seconds, and change events carry the
undocumented top-level ``project``, ``refName`` and ``changeKey`` that 2.13
really sends. Callers hold ``SimState.lock``.
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


def patchset_attr(state: SimState, patchset: PatchSet) -> dict[str, Any]:
    commit = patchset.commit
    return {
        "number": str(patchset.number),
        "revision": commit.sha,
        "parents": list(commit.parents),
        "ref": patchset.ref,
        "uploader": account_attr(state, patchset.uploader),
        "createdOn": patchset.created_on,
        "author": author_attr(state, patchset),
        "isDraft": False,
        "kind": patchset.kind,
        "sizeInsertions": commit.insertions,
        "sizeDeletions": -commit.deletions,
    }


def change_attr(state: SimState, change: Change) -> dict[str, Any]:
    current = change.current.commit
    attr: dict[str, Any] = {"project": change.project, "branch": change.branch}
    if change.topic:
        attr["topic"] = change.topic
    return attr | {
        "id": change.change_id,
        "number": str(change.number),
        "subject": current.subject,
        "owner": account_attr(state, change.owner),
        "url": state.change_url(change),
        "commitMessage": current.message,
        "status": change.status,
    }


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
