"""``gerrit review``: votes, messages, abandon, restore, rebase, move and submit.

Runs in the server thread of the exec request. Both dialects, as their
cmd-review docs say: a vote outside the voter's permitted range given with
``--label`` (or in a ``--json`` ReviewInput) fails the whole review in 3.x,
and one given with a per-label option (``--code-review``) is dropped
silently; 2.13 drops both silently unless ``--strict-labels``. 3.x refuses
``--publish``; 2.13 accepts it (there are no drafts to publish).
Differences from Gerrit, on purpose: votes on a patch set that is not
current are ignored (an error with ``--strict-labels``); with
``--abandon``/``--restore`` the message becomes the reason only; a
ReviewInput's inline ``comments`` are accepted and dropped; ``--rebase``
rebases onto the branch tip, never onto a parent change.
"""

from __future__ import annotations

import json
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
    "--move": "move",
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
    "--json": "json",
    "-j": "json",
    "--rebase": "rebase",
}
#: Per docs, pairs of actions that may not be combined.
_EXCLUSIVE = (
    ("json", ("submit", "restore", "abandon", "message", "rebase", "move")),
    ("abandon", ("submit", "restore", "rebase", "move")),
    ("rebase", ("submit",)),
)
_NOTIFY = {"NONE", "OWNER", "OWNER_REVIEWERS", "ALL"}
_PATCHSET = re.compile(r"(\d+),(\d+)")
_SHA = re.compile(r"[0-9a-f]{4,40}")


@dataclass
class ReviewArgs:
    project: str | None = None
    branch: str | None = None
    message: str | None = None
    votes: list[tuple[str, str]] = field(default_factory=list)
    #: Labels given with --label or --json: 3.x refuses such a vote the
    #: voter may not cast, where it drops a per-label option's.
    strict_votes: set[str] = field(default_factory=set)
    submit: bool = False
    abandon: bool = False
    restore: bool = False
    strict: bool = False
    json: bool = False
    rebase: bool = False
    publish: bool = False
    move: str | None = None
    tag: str | None = None
    notify: str | None = None
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


def parse(argv: list[str], three_x: bool = True) -> ReviewArgs:
    """Parse the arguments after ``gerrit review`` as Gerrit 3.x (``three_x``)
    or 2.13 does.

    Every defined label has its own option (``--workflow 1``) besides
    ``--label Workflow=1``.

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
        if name == "--publish" and three_x:
            # Drafts, and --publish with them, went away in 2.15.
            raise UsageError(f'"{arg}" is not a valid option')
        if name in _FLAGS and not eq:
            setattr(args, _FLAGS[name], True)
            continue
        label_option = labels.lookup(name[2:]) if name.startswith("--") else None
        if name not in _WITH_ARG and label_option is None:
            raise UsageError(f'"{arg}" is not a valid option')
        value, i = operand(argv, i, name, inline if eq else None)
        if label_option is not None:
            args.votes.append((label_option.name, value))
            continue
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
            args.strict_votes.add(label_name.lower())
        elif key == "move":
            args.move = value
        elif key == "tag":
            args.tag = value
        elif key == "notify":
            if value.upper() not in _NOTIFY:
                raise UsageError(f'"{value}" is not a valid value for "{name}"')
            args.notify = value.upper()
    given = {
        "json": args.json,
        "submit": args.submit,
        "restore": args.restore,
        "abandon": args.abandon,
        "message": args.message is not None,
        "rebase": args.rebase,
        "move": args.move is not None,
    }
    for first, others in _EXCLUSIVE:
        clash = [o for o in others if given[first] and given[o]]
        if clash:
            raise UsageError(f"--{first} and --{clash[0]} are mutually exclusive")
    if sum((args.submit, args.abandon, args.restore)) > 1:
        raise UsageError("abandon, restore and submit actions are mutually exclusive")
    if not args.targets:
        raise UsageError('Argument "{COMMIT | CHANGE,PATCHSET}" is required')
    return args


def read_review_input(args: ReviewArgs, stdin: str) -> None:
    """Take ``--json``'s ReviewInput (``stdin``) into ``args``: message,
    labels, tag, notify; comments are accepted and dropped.

    :raises UsageError: not a JSON object, or a field of the wrong type.
    """
    try:
        data = json.loads(stdin)
    except ValueError as exc:
        raise UsageError(f"invalid review input: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError("invalid review input: not a JSON object")
    message = data.get("message")
    given_labels = data.get("labels", {})
    tag = data.get("tag")
    notify = data.get("notify")
    if message is not None and not isinstance(message, str):
        raise UsageError("invalid review input: message is not a string")
    if not isinstance(given_labels, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in given_labels.values()
    ):
        raise UsageError("invalid review input: labels is not an object of numbers")
    if tag is not None and not isinstance(tag, str):
        raise UsageError("invalid review input: tag is not a string")
    if notify is not None and (not isinstance(notify, str) or notify.upper() not in _NOTIFY):
        raise UsageError("invalid review input: notify is not NONE, OWNER, OWNER_REVIEWERS, ALL")
    args.message = message
    args.votes.extend((str(name), str(value)) for name, value in given_labels.items())
    args.strict_votes.update(str(name).lower() for name in given_labels)
    args.tag = tag if tag is not None else args.tag
    args.notify = notify.upper() if notify is not None else args.notify


def run(
    state: SimState, username: str, command: str, argv: list[str], stdin: str = ""
) -> CommandResult:
    """Run ``gerrit review`` (``argv`` excludes ``gerrit review``) and record it;
    ``stdin``: what the client sent (read for ``--json``)."""
    result = CommandResult()
    args = ReviewArgs()
    try:
        args = parse(argv, state.speaks_3x())
        if args.json:
            read_review_input(args, stdin)
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
        tag=args.tag,
        notify=args.notify,
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
        if args.move is not None:
            _change_branch(state, username, change, patchset, args.move)
    if args.rebase:
        _rebase(state, username, change)
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
        allowed = state.vote_range(change.project, username, label.name) if label else None
        if label is None and not problem:
            problem = f"label {name} not found"
        elif label is not None and not problem and not label.minimum <= value <= label.maximum:
            problem = f"label {label.name}: {value} not permitted"
        elif (
            allowed is not None
            and not problem
            and value != 0
            and not allowed[0] <= value <= allowed[1]
        ):
            # 3.x's words; its ReviewInput is strict, so the whole review fails.
            restricted = f'Applying label "{label.name if label else name}": {value} is restricted'
            if args.strict or (state.speaks_3x() and name.lower() in args.strict_votes):
                raise GerritError(restricted)
            continue
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
            needed = state.requirements_of(change.project)
            statuses = labels.submit_status(patchset.current_votes(), needed)
            problems = labels.unmet(statuses, needed)
            if problems:
                raise GerritError(
                    f"Change {change.number}: submit requirements not satisfied: "
                    + ", ".join(problems)
                )
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


def _change_branch(
    state: SimState, username: str, change: Change, patchset: PatchSet, branch: str
) -> None:
    """``--move``: the change now targets ``branch``; caller holds the lock.

    :raises GerritError: the change is closed, or no such branch.
    """
    if not change.is_open:
        raise GerritError(f"Change {change.number}: change is {change.status.lower()}")
    if state.project(change.project).repo.rev(f"refs/heads/{branch}") is None:
        raise GerritError(f"Change {change.number}: destination branch {branch} not found")
    if branch == change.branch:
        raise GerritError(f"Change {change.number}: change is already destined for {branch}")
    old, change.branch = change.branch, branch
    change.last_updated = now()
    text = f"Change destination moved from {old} to {branch}"
    change.messages.append(SimMessage(username, text, patchset.number, text, change.last_updated))


def _rebase(state: SimState, username: str, change: Change) -> None:
    """``--rebase``: a new patch set, the current one replayed on the branch tip.

    :raises GerritError: closed, already up to date, or a conflict.
    """
    project = state.project(change.project)
    repo = project.repo
    with project.lock:
        with state.lock:
            if not change.is_open:
                raise GerritError(f"Change {change.number}: change is {change.status.lower()}")
            current = change.current.commit
        tip = repo.rev(f"refs/heads/{change.branch}")
        if tip is None:
            raise GerritError(f"Change {change.number}: branch {change.branch} not found")
        if tip in current.parents:
            raise GerritError(f"Change {change.number}: change is already up to date")
        try:
            # The merge base of the tip and the patch set is the patch set's
            # parent when it sits on the branch (git 2.39 has no --merge-base).
            tree = repo.git("merge-tree", "--write-tree", tip, current.sha).split("\n", 1)[0]
        except GerritError as exc:
            raise GerritError(f"Change {change.number}: could not rebase: conflict") from exc
        # The same commit object (author, message) on a new tree and parent.
        raw = repo.git("cat-file", "commit", current.sha)
        header, _, body = raw.partition("\n\n")
        kept = [line for line in header.splitlines() if not line.startswith(("tree ", "parent "))]
        rebased = "\n".join([f"tree {tree.strip()}", f"parent {tip}", *kept]) + "\n\n" + body
        sha = repo.git(
            "hash-object",
            "-t",
            "commit",
            "-w",
            "--stdin",
            stdin=rebased.encode("utf-8", "surrogateescape"),
        ).strip()
        with state.lock:
            added = state.add_patchset(
                change.project, change.branch, repo.commit_info(sha), username
            )
            if added is None:
                raise GerritError(f"Change {change.number}: could not rebase")
            _, patchset = added
            repo.update_refs([(patchset.ref, sha, "0" * 40)])
            state.emit(events.patchset_created(state, change, patchset))
    log.info("change %d rebased by %s as patch set %d", change.number, username, patchset.number)
