"""Reading changes from Gerrit: over SSH (``gerrit query``, the default) or
over REST (when the site file has ``gerrit.http``), behind one seam.

The rest of gatekeeper reads a change as the SSH query's row (``number``,
``currentPatchSet``, ``patchSets``, ``dependsOn``, ``comments``, ...); the
REST side turns Gerrit's ChangeInfo (and the revision's related changes)
into that row with :func:`row_from_change_info`, so the parsers downstream
(:func:`~gatekeeper.gerrit.source.change_from_query`, the catch-up's event
synthesis, the reporter's read-backs) stay one and are checked once.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, Protocol

from gatekeeper.config.site import GerritConfig
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.rest import GerritRest

log = logging.getLogger(__name__)

#: The REST options every change read asks for (the SSH query's
#: ``--current-patch-set --all-approvals --files --commit-message --comments``).
REST_OPTIONS = (
    "ALL_REVISIONS",
    "DETAILED_LABELS",
    "DETAILED_ACCOUNTS",
    "MESSAGES",
    "CURRENT_FILES",
    "CURRENT_COMMIT",
    "SUBMIT_REQUIREMENTS",
)


class ChangeQueries(Protocol):
    """Where the scheduler and the catch-up read changes from: query rows in
    the SSH query's shape, whatever the transport."""

    config: GerritConfig

    def query_change(self, number: int) -> dict[str, Any] | None: ...

    def query_changes(self, query: str) -> list[dict[str, Any]]: ...

    def query_comments(self, number: int) -> dict[str, Any] | None:
        """Change ``number``'s row with its messages (``comments``)."""

    def query_all(
        self, query: str, *options: str, max_pages: int = 1000
    ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _seconds(value: Any) -> int:
    """Gerrit's REST time (``2013-02-21 11:16:36.775000000``, UTC) as whole
    seconds, as the SSH query gives them; 0 for anything else."""
    if not isinstance(value, str):
        return 0
    try:
        at = datetime.datetime.strptime(value.strip()[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return 0
    return int(at.replace(tzinfo=datetime.UTC).timestamp())


def _account(value: Any) -> dict[str, Any]:
    """An AccountInfo as the SSH query's account (name, email, username)."""
    if not isinstance(value, dict):
        return {}
    return {k: value[k] for k in ("name", "email", "username") if isinstance(value.get(k), str)}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _files(revision: dict[str, Any], message: str) -> list[dict[str, Any]] | None:
    files = revision.get("files")
    if not isinstance(files, dict):
        return None
    kinds = {"A": "ADDED", "D": "DELETED", "R": "RENAMED", "C": "COPIED", "W": "REWRITE"}
    # The SSH query lists the commit message as a file of its own, first;
    # a ChangeInfo's files may leave it out.
    rows: list[dict[str, Any]] = []
    if "/COMMIT_MSG" not in files:
        rows.append(
            {"file": "/COMMIT_MSG", "type": "ADDED", "insertions": len(message.splitlines())}
        )
    for path, info in files.items():
        info = _dict(info)
        rows.append(
            {
                "file": path,
                "type": kinds.get(str(info.get("status", "")), "MODIFIED"),
                "insertions": info.get("lines_inserted", 0),
                "deletions": -int(info.get("lines_deleted", 0) or 0),
            }
        )
    return rows


def _approvals(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The current patch set's votes from DETAILED_LABELS (0s are no vote)."""
    approvals = []
    for label, detail in _dict(info.get("labels")).items():
        for vote in _dicts(_dict(detail).get("all")):
            value = vote.get("value")
            if type(value) is not int or value == 0:
                continue
            approvals.append(
                {
                    "type": label,
                    "value": value,
                    "grantedOn": _seconds(vote.get("date")),
                    "by": _account(vote),
                }
            )
    return approvals


def row_from_change_info(
    info: dict[str, Any], related: list[dict[str, Any]], web_url: str = ""
) -> dict[str, Any]:
    """The SSH query row (with ``--current-patch-set --all-approvals
    --dependencies --files --commit-message --comments``) that Gerrit's
    ChangeInfo ``info`` and its current revision's ``related`` changes
    (``GET .../related``) describe.

    Field types are left as Gerrit sent them: the row's readers check them.
    Votes on patch sets before the current one are not in a ChangeInfo, so
    the row's older patch sets have none.
    """
    number = info.get("_number")
    current_sha = info.get("current_revision")
    revisions = _dict(info.get("revisions"))
    patch_sets: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    message = ""
    for sha, revision in revisions.items():
        revision = _dict(revision)
        row: dict[str, Any] = {
            "number": revision.get("_number"),
            "revision": sha,
            "ref": revision.get("ref"),
            "uploader": _account(revision.get("uploader")),
            "createdOn": _seconds(revision.get("created")),
            "kind": revision.get("kind"),
        }
        if sha == current_sha:
            message = str(_dict(revision.get("commit")).get("message", ""))
            parents = [
                _dict(p).get("commit") for p in _dicts(_dict(revision.get("commit")).get("parents"))
            ]
            if parents:
                row["parents"] = parents
            approvals = _approvals(info)
            if approvals:
                row["approvals"] = approvals
            files = _files(revision, message)
            if files is not None:
                row["files"] = files
            current = row
        patch_sets.append(row)
    patch_sets.sort(key=lambda ps: ps["number"] if type(ps["number"]) is int else 0)
    owner = _account(info.get("owner"))
    row = {
        "project": info.get("project"),
        "branch": info.get("branch"),
        "id": info.get("change_id"),
        "number": number,
        "subject": info.get("subject"),
        "owner": owner,
        "url": f"{web_url}{number}" if web_url else "",
        "commitMessage": message,
        "createdOn": _seconds(info.get("created")),
        "lastUpdated": _seconds(info.get("updated")),
        "open": info.get("status") == "NEW",
        "status": info.get("status"),
        "comments": [
            {
                "timestamp": _seconds(m.get("date")),
                "reviewer": _account(m.get("author")),
                "message": m.get("message", ""),
            }
            for m in _dicts(info.get("messages"))
        ],
        "patchSets": patch_sets,
    }
    if current:
        row["currentPatchSet"] = current
    records = [_submit_record(r) for r in _dicts(info.get("submit_records"))]
    if records:
        row["submitRecords"] = records
    depends, needed = _dependencies(current.get("parents") or [], set(revisions), related)
    if depends:
        row["dependsOn"] = depends
    if needed:
        row["neededBy"] = needed
    return row


def _submit_record(record: dict[str, Any]) -> dict[str, Any]:
    """A SubmitRecordInfo as the SSH query's submit record."""
    out: dict[str, Any] = {"status": record.get("status")}
    labels = []
    for label in _dicts(record.get("labels")):
        item: dict[str, Any] = {"label": label.get("label"), "status": label.get("status")}
        if "appliedBy" in label:
            item["by"] = _account(label.get("appliedBy"))
        labels.append(item)
    if labels:
        out["labels"] = labels
    if "requirements" in record:
        out["requirements"] = record["requirements"]
    if "error_message" in record:
        out["errorMessage"] = record["error_message"]
    return out


def _dependencies(
    parents: list[Any], revisions: set[str], related: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """dependsOn (the changes the current revision's git parents are) and
    neededBy (open changes whose current revision sits on one of ours) from
    RelatedChangeAndCommitInfo entries."""
    depends: list[dict[str, Any]] = []
    needed: list[dict[str, Any]] = []
    for entry in related:
        commit = _dict(entry.get("commit"))
        sha = commit.get("commit")
        link = {
            "id": entry.get("change_id"),
            "number": entry.get("_change_number"),
            "revision": sha,
            "isCurrentPatchSet": entry.get("_revision_number")
            == entry.get("_current_revision_number"),
        }
        if sha in parents:
            depends.append(link)
        elif entry.get("status", "NEW") == "NEW" and link["isCurrentPatchSet"]:
            its_parents = {_dict(p).get("commit") for p in _dicts(commit.get("parents"))}
            if its_parents & revisions:
                needed.append(link)
    return depends, needed


class RestChanges:
    """Change reads over Gerrit's REST API (a ChangeInfo query, then each
    change's related changes), as SSH query rows."""

    def __init__(self, config: GerritConfig, rest: GerritRest) -> None:
        self.config = config
        self.rest = rest
        # A ChangeInfo has no URL: the change's page under Gerrit's web URL.
        base = config.web_url or (config.http.url if config.http is not None else "")
        self.web_url = base if not base or base.endswith("/") else base + "/"

    def close(self) -> None:
        self.rest.close()

    def _rows(self, query: str, related: bool = True) -> list[dict[str, Any]]:
        """The rows of ``query``; with ``related``, each change's dependencies
        (one more request per change).

        :raises GerritError:
        """
        rows = []
        for info in self.rest.query(query, REST_OPTIONS):
            number = info.get("_number")
            sha = info.get("current_revision")
            if type(number) is not int or not isinstance(sha, str):
                raise GerritError("a REST change has no _number or current_revision")
            links = self.rest.related(number, sha) if related else []
            rows.append(row_from_change_info(info, links, self.web_url))
        return rows

    def query_change(self, number: int) -> dict[str, Any] | None:
        """:raises GerritError:"""
        rows = self._rows(f"change:{int(number)}")
        return rows[0] if rows else None

    def query_changes(self, query: str) -> list[dict[str, Any]]:
        """:raises GerritError:"""
        return self._rows(query)

    def query_comments(self, number: int) -> dict[str, Any] | None:
        """:raises GerritError:"""
        return self.query_change(number)

    def query_all(self, query: str, *options: str, max_pages: int = 1000) -> list[dict[str, Any]]:
        """Every change ``query`` finds (REST pages are followed by
        :meth:`GerritRest.query`), with votes, messages and patch sets, not
        dependencies: they cost a request per change, and the catch-up (the
        one caller) reads none.

        :raises GerritError:
        """
        return self._rows(query, related=False)
