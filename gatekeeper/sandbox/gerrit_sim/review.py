"""``gerrit review``: votes, messages, abandon, restore and submit.

Runs in the server thread of the exec request. Differences from Gerrit,
on purpose: any account may vote any known label (no permissions); votes
on a patch set that is not current are ignored (an error with
``--strict-labels``); with ``--abandon``/``--restore`` the message becomes
the reason only; ``--json`` is not supported.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from gatekeeper.errors import GerritError
from gatekeeper.sandbox.gerrit_sim import events, labels
from gatekeeper.sandbox.gerrit_sim.options import UsageError, operand
from gatekeeper.sandbox.gerrit_sim.records import CommandResult, ReviewRecord, SimMessage
from gatekeeper.sandbox.gerrit_sim.state import Change, PatchSet, SimState, Vote, now

log = logging.getLogger(__name__)

_WITH_ARG = {
    "--project": "project",
    "-p": "project",
    "--branch": "branch",
    "-b": "branch",
    "--message": "message",
    "-m": "message",
    "--label": "label",
    "-l": "label",
    "--verified": "verified",
    "--code-review": "code-review",
    "--notify": "notify",
    "-n": "notify",
    "--tag": "tag",
    "-t": "tag",
}
_FLAGS = {
    "--submit": "submit",
    "-s": "submit",
    "--abandon": "abandon",
    "--restore": "restore",
    "--strict-labels": "strict",
    "--publish": "publish",
}
_NOTIFY = {"NONE", "OWNER", "OWNER_REVIEWERS", "ALL"}
_PATCHSET = re.compile(r"(\d+),(\d+)")
_SHA = re.compile(r"[0-9a-f]{4,40}")


@dataclass
class ReviewArgs:
    project: str | None = None
    branch: str | None = None
    message: str | None = None
    votes: list[tuple[str, str]] = field(default_factory=list)
    submit: bool = False
    abandon: bool = False
    restore: bool = False
    strict: bool = False
    targets: list[str] = field(default_factory=list)

    def labels(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for name, value in self.votes:
            label = labels.lookup(name)
            try:
                result[label.name if label else name] = int(value)
            except ValueError:
                continue
        return result


def parse(argv: list[str]) -> ReviewArgs:
    """Parse the arguments after ``gerrit review``.

    :raises UsageError: unknown option, missing value, bad combination.
    """
    args = ReviewArgs()
    i = 0
    only_positional = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if only_positional or not arg.startswith("-") or arg == "-":
            args.targets.append(arg)
            continue
        if arg == "--":
            only_positional = True
            continue
        name, eq, inline = arg.partition("=")
        if name in _FLAGS and not eq:
            setattr(args, _FLAGS[name], True)
            continue
        if name not in _WITH_ARG:
            raise UsageError(f'"{arg}" is not a valid option')
        value, i = operand(argv, i, name, inline if eq else None)
        key = _WITH_ARG[name]
        if key == "project":
            args.project = value
        elif key == "branch":
            args.branch = value
        elif key == "message":
            args.message = value
        elif key == "label":
            label_name, sep, label_value = value.partition("=")
            if not sep:
                raise UsageError(f'"{value}" is not a valid label; use Name=VALUE')
            args.votes.append((label_name, label_value))
        elif key in ("verified", "code-review"):
            args.votes.append(("Verified" if key == "verified" else "Code-Review", value))
        elif key == "notify" and value.upper() not in _NOTIFY:
            raise UsageError(f'"{value}" is not a valid value for "{name}"')
    if sum((args.submit, args.abandon, args.restore)) > 1:
        raise UsageError("abandon, restore and submit actions are mutually exclusive")
    if not args.targets:
        raise UsageError('Argument "{COMMIT | CHANGE,PATCHSET}" is required')
    return args


def run(state: SimState, username: str, command: str, argv: list[str]) -> CommandResult:
    """Run ``gerrit review`` (``argv`` excludes ``gerrit review``) and record it."""
    result = CommandResult()
    args = ReviewArgs()
    try:
        args = parse(argv)
        errors: list[str] = []
        for target in args.targets:
            try:
                _review_one(state, username, args, target)
            except GerritError as exc:
                errors.append(f"error: {exc}\n")
        if errors:
            result = CommandResult(
                1,
                "",
                "".join(errors) + "fatal: one or more approvals failed; review output above\n",
            )
    except UsageError as exc:
        result = CommandResult(1, "", f"fatal: {exc}\n")
    record = ReviewRecord(
        command=command,
        argv=["gerrit", "review", *argv],
        username=username,
        labels=args.labels(),
        message=args.message,
        submit=args.submit,
        abandon=args.abandon,
        restore=args.restore,
        targets=list(args.targets),
        exit_status=result.exit_status,
        stderr=result.stderr,
    )
    with state.lock:
        state.reviews.append(record)
    log.debug("gerrit review by %s -> %d", username, result.exit_status)
    return result


def _resolve(state: SimState, args: ReviewArgs, target: str) -> tuple[Change, PatchSet]:
    candidates: list[tuple[Change, PatchSet]] = []
    match = _PATCHSET.fullmatch(target)
    with state.lock:
        if match:
            change = state.changes.get(int(match.group(1)))
            ps_number = int(match.group(2))
            if change is not None and 0 < ps_number <= len(change.patchsets):
                candidates.append((change, change.patchsets[ps_number - 1]))
        elif _SHA.fullmatch(target):
            for change in state.changes.values():
                for ps in change.patchsets:
                    if ps.commit.sha.startswith(target):
                        candidates.append((change, ps))
        candidates = [
            (c, ps)
            for c, ps in candidates
            if (args.project is None or c.project == args.project)
            and (args.branch is None or c.branch == args.branch)
        ]
    if not candidates:
        raise GerritError(f'"{target}" no such change')
    if len(candidates) > 1:
        raise GerritError(f'"{target}" matches multiple changes')
    return candidates[0]


def _review_one(state: SimState, username: str, args: ReviewArgs, target: str) -> None:
    change, patchset = _resolve(state, args, target)
    with state.lock:
        _apply_votes(state, username, args, change, patchset)
        reason = args.message or ""
        if args.abandon:
            _move(change, patchset, username, "NEW", "ABANDONED", "Abandoned", reason)
            state.emit(events.change_abandoned(state, change, username, reason))
        elif args.restore:
            _move(change, patchset, username, "ABANDONED", "NEW", "Restored", reason)
            state.emit(events.change_restored(state, change, username, reason))
    if args.submit:
        _submit(state, username, change, patchset)


def _move(
    change: Change,
    patchset: PatchSet,
    username: str,
    before: str,
    after: str,
    headline: str,
    reason: str,
) -> None:
    """Abandon or restore: the status moves from ``before`` to ``after`` and
    the change gets Gerrit's message for it; caller holds the lock.

    :raises GerritError: the change is not ``before``.
    """
    if change.status != before:
        raise GerritError(f"change is {change.status.lower()}")
    change.status = after
    change.last_updated = now()
    text = headline + (f"\n\n{reason}" if reason else "")
    change.messages.append(SimMessage(username, reason, patchset.number, text, change.last_updated))


def _apply_votes(
    state: SimState, username: str, args: ReviewArgs, change: Change, patchset: PatchSet
) -> None:
    """Record the votes and emit comment-added; caller holds the lock.

    :raises GerritError: with ``--strict-labels``, a vote that cannot be cast.
    """
    changed: dict[str, int] = {}
    accepted: dict[str, int] = {}
    for name, raw in args.votes:
        label = labels.lookup(name)
        problem = ""
        try:
            value = int(raw)
        except ValueError:
            problem = f"label {name}: {raw!r} is not a number"
            value = 0
        if label is None and not problem:
            problem = f"label {name} not found"
        elif label is not None and not problem and not label.minimum <= value <= label.maximum:
            problem = f"label {label.name}: {value} not permitted"
        elif not problem and patchset is not change.current:
            problem = f"patch set {patchset.number} is not current"
        elif not problem and not change.is_open:
            problem = f"change is {change.status.lower()}"
        if problem:
            if args.strict:
                raise GerritError(f"Change {change.number}: {problem}")
            continue
        assert label is not None
        accepted[label.name] = value
    timestamp = now()
    for label_name, value in accepted.items():
        user_votes = patchset.votes.setdefault(label_name, {})
        old = user_votes.get(username)
        old_value = old.value if old else 0
        if old is None or old.value != value:
            user_votes[username] = Vote(value, timestamp)
        if old_value != value:
            changed[label_name] = old_value
    message = args.message or ""
    if args.abandon or args.restore:
        message = ""
    if not changed and not message:
        return
    summary = " ".join(
        labels.format_vote(name, patchset.votes[name][username].value)
        for name in labels.ORDER
        if name in changed
    )
    comment = f"Patch Set {patchset.number}:" + (f" {summary}" if summary else "")
    if message:
        comment += f"\n\n{message}"
    approvals: list[dict[str, str]] = []
    for name in labels.ORDER:
        vote = patchset.votes.get(name, {}).get(username)
        if vote is None:
            continue
        item = {"type": name, "description": name, "value": str(vote.value)}
        if name in changed:
            item["oldValue"] = str(changed[name])
        approvals.append(item)
    change.messages.append(SimMessage(username, message, patchset.number, comment, timestamp))
    change.last_updated = timestamp
    state.emit(events.comment_added(state, change, patchset, username, comment, approvals))


def _submit(state: SimState, username: str, change: Change, patchset: PatchSet) -> None:
    """Merge the change into its branch (fast-forward or merge commit).

    :raises GerritError: not submittable, depends on unmerged work, conflict.
    """
    project = state.project(change.project)
    with project.lock:
        with state.lock:
            if not change.is_open:
                raise GerritError(f"Change {change.number}: change is {change.status.lower()}")
            if patchset is not change.current:
                raise GerritError(
                    f"Change {change.number}: patch set {patchset.number} is not current"
                )
            problems = [
                f"{'needs' if status == 'NEED' else 'blocked by'} {name}"
                for name, status, _ in labels.submit_status(patchset.current_votes())
                if status != "OK"
            ]
            if problems:
                raise GerritError(f"Change {change.number}: {', '.join(problems)}")
            revision = patchset.commit.sha
            subject = patchset.commit.subject
        repo = project.repo
        branch_ref = f"refs/heads/{change.branch}"
        old = repo.rev(branch_ref)
        if old is None:
            raise GerritError(f"Change {change.number}: branch {change.branch} not found")
        if [c for c in repo.commits_between(revision, old) if c != revision]:
            raise GerritError(f"Change {change.number}: depends on change that was not submitted")
        if repo.is_ancestor(revision, old):
            new = old
        elif repo.is_ancestor(old, revision):
            new = revision
        else:
            try:
                new = repo.merge(old, revision, f'Merge "{subject}"')
            except GerritError as exc:
                raise GerritError(
                    f"Change {change.number}: {exc}: the change could not be merged; "
                    "rebase it and upload a new patch set"
                ) from exc
        if new != old:
            repo.update_refs([(branch_ref, new, old)])
        with state.lock:
            change.status = "MERGED"
            change.last_updated = now()
            text = f"Change has been successfully merged by {username}"
            change.messages.append(
                SimMessage(username, text, patchset.number, text, change.last_updated)
            )
            state.emit(events.change_merged(state, change, username, new))
            if new != old:
                update = [(branch_ref, old, new)]
                for event in events.ref_updates(state, change.project, update, username):
                    state.emit(event)
    log.info("change %d merged into %s as %s", change.number, branch_ref, new)
