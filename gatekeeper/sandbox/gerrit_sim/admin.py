"""Gerrit's SSH commands for reviewers and projects, and the harness's
changes for which no SSH command exists (topic, hashtags, WIP, private,
vote and change deletion: the REST API or the UI do those in Gerrit).

``gerrit set-reviewers`` (3.x cmd-set-reviewers), ``gerrit create-project``
and ``gerrit set-head``: each change happens and its event is emitted under
``SimState.lock``, so listeners see events in the order things happened.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.errors import GerritError
from gatekeeper.sandbox.gerrit_sim import events, labels
from gatekeeper.sandbox.gerrit_sim.git import ZERO
from gatekeeper.sandbox.gerrit_sim.options import UsageError, operand
from gatekeeper.sandbox.gerrit_sim.records import CommandResult
from gatekeeper.sandbox.gerrit_sim.state import Change, SimState, now


def _change(state: SimState, target: str) -> Change:
    """The change named by a number or a Change-Id.

    :raises GerritError: no such change.
    """
    with state.lock:
        if target.isdigit() and int(target) in state.changes:
            return state.changes[int(target)]
        for change in state.changes.values():
            if change.change_id == target:
                return change
    raise GerritError(f'"{target}" no such change')


def set_reviewers(state: SimState, username: str, argv: list[str]) -> CommandResult:
    """``gerrit set-reviewers [-p P] [-a R]... [-r R]... CHANGE...``."""
    add: list[str] = []
    remove: list[str] = []
    targets: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, inline = arg.partition("=")
        try:
            if name in ("--project", "-p"):
                _, i = operand(argv, i, name, inline if eq else None)
            elif name in ("--add", "-a"):
                value, i = operand(argv, i, name, inline if eq else None)
                add.append(value)
            elif name in ("--remove", "-r"):
                value, i = operand(argv, i, name, inline if eq else None)
                remove.append(value)
            elif arg == "--":
                targets.extend(argv[i:])
                break
            elif arg.startswith("-"):
                return CommandResult(1, "", f'fatal: "{arg}" is not a valid option\n')
            else:
                targets.append(arg)
        except UsageError as exc:
            return CommandResult(1, "", f"fatal: {exc}\n")
    if not targets:
        return CommandResult(1, "", 'fatal: Argument "CHANGE" is required\n')
    with state.lock:
        try:
            changes = [_change(state, t) for t in targets]
        except GerritError as exc:
            return CommandResult(1, "", f"fatal: {exc}\n")
        for who in [*add, *remove]:
            if who not in state.accounts:
                return CommandResult(1, "", f"fatal: account {who} not found\n")
        for change in changes:
            for who in add:
                if who not in change.reviewers:
                    change.reviewers.append(who)
                    change.last_updated = now()
                    state.emit(events.reviewer_added(state, change, who, username))
            for who in remove:
                if who in change.reviewers or _votes_of(change, who):
                    _remove_reviewer(state, change, who, username)
    return CommandResult(0, "", "")


def _votes_of(change: Change, who: str) -> dict[str, int]:
    return {
        label: users[who].value
        for label, users in change.current.votes.items()
        if who in users and users[who].value != 0
    }


def _approvals(state: SimState, votes: dict[str, int], who: str) -> list[dict[str, Any]]:
    return [
        {
            "type": label,
            "description": label,
            "value": str(value),
            "by": events.account_attr(state, who),
        }
        for label, value in votes.items()
    ]


def _remove_reviewer(state: SimState, change: Change, who: str, remover: str) -> None:
    votes = _votes_of(change, who)
    for label in votes:
        del change.current.votes[label][who]
    if who in change.reviewers:
        change.reviewers.remove(who)
    change.last_updated = now()
    comment = f"Removed reviewer {who}" + "".join(
        f" with the following votes:\n\n* {label}{value:+d} by {who}\n"
        for label, value in votes.items()
    )
    approvals = _approvals(state, votes, who)
    state.emit(events.reviewer_deleted(state, change, who, remover, approvals, comment))


def create_project(state: SimState, username: str, argv: list[str]) -> CommandResult:
    """``gerrit create-project NAME [--branch B] [--empty-commit]``: always
    with one commit (the simulator has no empty projects)."""
    names = [a for a in argv if not a.startswith("-")]
    branch = "master"
    for i, arg in enumerate(argv):
        if arg in ("--branch", "-b") and i + 1 < len(argv):
            branch = argv[i + 1]
            names.remove(argv[i + 1])
    if len(names) != 1:
        return CommandResult(1, "", 'fatal: Argument "NAME" is required\n')
    name = names[0].removesuffix(".git")
    try:
        state.create_project(name, {"README": f"{name}\n"}, branch)
    except GerritError as exc:
        return CommandResult(1, "", f"fatal: {exc}\n")
    with state.lock:
        state.project(name).head = f"refs/heads/{branch}"
        state.emit(events.project_created(state, name, f"refs/heads/{branch}"))
    return CommandResult(0, "", "")


def set_head(state: SimState, username: str, argv: list[str]) -> CommandResult:
    """``gerrit set-head PROJECT --new-head BRANCH`` (3.x only)."""
    if state.dialect != "3":
        return CommandResult(1, "", "fatal: gerrit set-head: not found\n")
    positional = [a for a in argv if not a.startswith("-")]
    new_head = ""
    for i, arg in enumerate(argv):
        if arg == "--new-head" and i + 1 < len(argv):
            new_head = argv[i + 1]
            positional.remove(new_head)
    if len(positional) != 1 or not new_head:
        return CommandResult(1, "", "fatal: usage: gerrit set-head PROJECT --new-head BRANCH\n")
    ref = new_head if new_head.startswith("refs/") else f"refs/heads/{new_head}"
    with state.lock:
        try:
            project = state.project(positional[0])
        except GerritError as exc:
            return CommandResult(1, "", f"fatal: {exc}\n")
        if project.repo.rev(ref) is None:
            return CommandResult(1, "", f"fatal: {ref} not found\n")
        old = project.head
        if old != ref:
            project.repo.git("symbolic-ref", "HEAD", ref)
            project.head = ref
            state.emit(events.project_head_updated(state, project.name, old, ref))
    return CommandResult(0, "", "")


# -- the harness's changes (no SSH command in Gerrit) ------------------------------


def set_topic(state: SimState, number: int, topic: str, who: str) -> None:
    with state.lock:
        change = state.changes[number]
        old, change.topic = change.topic, topic
        if old != topic:
            change.last_updated = now()
            state.emit(events.topic_changed(state, change, who, old))


def set_hashtags(state: SimState, number: int, add: list[str], remove: list[str], who: str) -> None:
    with state.lock:
        change = state.changes[number]
        added = [h for h in add if h not in change.hashtags]
        removed = [h for h in remove if h in change.hashtags]
        change.hashtags = [h for h in change.hashtags if h not in removed] + added
        if added or removed:
            change.last_updated = now()
            state.emit(events.hashtags_changed(state, change, who, added, removed))


def set_flag(state: SimState, number: int, flag: str, value: bool, who: str) -> None:
    """Set ``wip`` or ``private``; 3.x emits its state-changed event."""
    with state.lock:
        change = state.changes[number]
        if getattr(change, flag) == value:
            return
        setattr(change, flag, value)
        change.last_updated = now()
        if state.dialect == "3":
            kind = "wip-state-changed" if flag == "wip" else "private-state-changed"
            state.emit(events.state_changed(state, kind, change, who))


def delete_vote(state: SimState, number: int, label: str, reviewer: str, who: str) -> None:
    """Remove one vote (3.x: vote-deleted, with the votes that remain).

    :raises GerritError: no such vote.
    """
    with state.lock:
        change = state.changes[number]
        known = labels.lookup(label)
        name = known.name if known is not None else label
        vote = change.current.votes.get(name, {}).get(reviewer)
        if vote is None or vote.value == 0:
            raise GerritError(f"{reviewer} has no {name} vote on change {number}")
        old = vote.value
        del change.current.votes[name][reviewer]
        change.last_updated = now()
        if state.dialect != "3":
            return
        remaining = _approvals(state, _votes_of(change, reviewer), reviewer)
        removed = {"type": name, "description": name, "value": "0", "oldValue": str(old)}
        comment = f"Removed {name}{old:+d} by {reviewer}\n"
        approvals: list[dict[str, Any]] = [
            *remaining,
            removed | {"by": events.account_attr(state, reviewer)},
        ]
        state.emit(events.vote_deleted(state, change, reviewer, who, approvals, comment))


def delete_change(state: SimState, number: int, who: str) -> None:
    """Delete an open change (its refs go too): 3.x sends change-deleted.

    :raises GerritError: the change is closed.
    """
    with state.lock:
        change = state.changes[number]
        if not change.is_open:
            raise GerritError(f"change {number} is not open")
        repo = state.project(change.project).repo
        repo.update_refs([(ps.ref, "", ps.commit.sha) for ps in change.patchsets])
        del state.changes[number]
        if state.dialect == "3":
            state.emit(events.change_deleted(state, change, who))


def create_tag(state: SimState, project: str, tag: str, who: str, branch: str = "master") -> str:
    """Tag the tip of ``branch`` (what a release manager's tag push does):
    ref-updated for ``refs/tags/<tag>``. Returns the tagged sha.

    :raises GerritError: no such project or branch, or the tag exists.
    """
    with state.lock:
        repo = state.project(project).repo
        sha = repo.rev(f"refs/heads/{branch}")
        if sha is None:
            raise GerritError(f"{project} has no branch {branch}")
        ref = f"refs/tags/{tag}"
        if repo.rev(ref) is not None:
            raise GerritError(f"{project} already has {ref}")
        repo.update_refs([(ref, sha, ZERO)])
        for event in events.ref_updates(state, project, [(ref, ZERO, sha)], who):
            state.emit(event)
    return sha
