"""The simulator's REST API: the few endpoints a CI system uses, and the
events-log plugin's.

Starlette served by uvicorn in a thread of its own (``gatekeeper.web.server``),
on the simulator's state, with the same review logic as ``gerrit review``
(:mod:`gatekeeper.sandbox.gerrit_sim.review`). Every endpoint is under
``/a/`` and needs HTTP basic auth with the account's HTTP password; every
JSON answer starts with Gerrit's ``)]}'`` line (XSSI protection), except
the events-log plugin's, which is one stream event per line as its docs show.

Served: ``GET /a/changes/?q=&o=&n=&S=``, ``GET /a/changes/{id}/detail``,
``POST /a/changes/{id}/revisions/{rev}/review``, ``POST /a/changes/{id}/submit``,
``GET /a/config/server/version``, ``GET /a/plugins/`` and
``GET /a/plugins/events-log/events/?t1=&t2=``.

Differences from Gerrit, on purpose: account ids are given in the order the
accounts were added (from 1000000); a change id may be its number, its
Change-Id or ``project~branch~Change-Id``; ``t1``/``t2`` of the events-log
are read as UTC (Gerrit reads them in its own time zone); ``o=`` options the
simulator does not know are ignored; ``notify`` is accepted and no mail is sent.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gatekeeper.sandbox.gerrit_sim import events, labels, query, review
from gatekeeper.sandbox.gerrit_sim.state import Change, PatchSet, SimState
from gatekeeper.web.server import WebServer

log = logging.getLogger(__name__)

#: Gerrit's first line of every JSON answer, so a page cannot run it as script.
XSSI = ")]}'\n"
_FIRST_ACCOUNT_ID = 1000000
_TAG = re.compile(r"[^\s]{1,255}")


@dataclass(frozen=True)
class RestReview:
    """One ReviewInput received (for tests: the tag, notify and labels)."""

    username: str
    change: int
    patchset: int
    message: str
    labels: dict[str, int]
    tag: str
    notify: str
    status: int


class RestApi:
    """The REST side of one simulator; served from uvicorn's thread, the work
    done in Starlette's thread pool under the state's lock."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self.passwords: dict[str, str] = {}
        #: Off: the server has no events-log plugin (its endpoint is a 404).
        self.events_log = True
        self.reviews: list[RestReview] = []
        #: (user, q) of every change query, for tests to see who read over REST.
        self.queries: list[tuple[str, str]] = []

    def set_password(self, username: str, password: str) -> None:
        with self._lock:
            self.passwords[username] = password

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/a/config/server/version", self._version),
                Route("/a/changes/", self._query),
                Route("/a/changes/{change}/detail", self._detail),
                Route("/a/changes/{change}", self._detail),
                Route(
                    "/a/changes/{change}/revisions/{revision}/review",
                    self._review,
                    methods=["POST"],
                ),
                Route("/a/changes/{change}/revisions/{revision}/related", self._related),
                Route("/a/changes/{change}/submit", self._submit, methods=["POST"]),
                Route("/a/plugins/", self._plugins),
                Route("/a/plugins/events-log/events/", self._events_log),
            ]
        )

    # -- plumbing ---------------------------------------------------------------

    def _user(self, request: Request) -> str | None:
        """The account whose password the request carries, or None."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with self._lock:
            wanted = self.passwords.get(username)
        if wanted is None or wanted != password:
            return None
        with self.state.lock:
            return username if username in self.state.accounts else None

    def _change(self, ident: str) -> Change | None:
        """A change by number, Change-Id or ``project~branch~Change-Id``."""
        ident = unquote_plus(ident)
        with self.state.lock:
            if ident.isdigit():
                return self.state.changes.get(int(ident))
            for change in self.state.changes.values():
                if ident in (change.change_id, _triplet(change)):
                    return change
        return None

    def _account_id(self, username: str) -> int:
        with self.state.lock:
            names = list(self.state.accounts)
        return _FIRST_ACCOUNT_ID + (names.index(username) if username in names else len(names))

    def _account(self, username: str) -> dict[str, Any]:
        info: dict[str, Any] = {"_account_id": self._account_id(username)}
        with self.state.lock:
            account = self.state.accounts.get(username)
        if account is not None:
            info.update(name=account.name, email=account.email, username=account.username)
        return info

    # -- endpoints ----------------------------------------------------------------

    async def _version(self, request: Request) -> Response:
        if self._user(request) is None:
            return _unauthorized()
        return _json(self.state.version)

    async def _query(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return _unauthorized()
        params = request.query_params
        options = {o.upper() for o in params.getlist("o")}
        text = " ".join(params.getlist("q")) or "status:open"
        self.queries.append((user, text))
        try:
            limit = int(params.get("n", "0") or 0)
            start = int(params.get("S", params.get("start", "0")) or 0)
        except ValueError:
            return PlainTextResponse("bad n or S\n", status_code=400)
        try:
            predicates = []
            for term in text.split():
                predicate, term_limit = query._term(term)
                if predicate is not None:
                    predicates.append(predicate)
                elif term_limit is not None:
                    limit = term_limit
        except query.QueryError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        with self.state.lock:
            matched = [c for c in self.state.changes.values() if all(p(c) for p in predicates)]
            matched.sort(key=lambda c: (c.last_updated, c.number), reverse=True)
            matched = matched[start:]
            more = bool(limit) and len(matched) > limit
            if limit:
                matched = matched[:limit]
            infos = [self.change_info(c, options) for c in matched]
        if more:
            infos[-1]["_more_changes"] = True
        return _json(infos)

    async def _detail(self, request: Request) -> Response:
        if self._user(request) is None:
            return _unauthorized()
        change = self._change(request.path_params["change"])
        if change is None:
            return PlainTextResponse("Not found\n", status_code=404)
        detail = request.url.path.endswith("/detail")
        options = {"DETAILED_LABELS", "DETAILED_ACCOUNTS", "MESSAGES"} if detail else set()
        options |= {o.upper() for o in request.query_params.getlist("o")}
        with self.state.lock:
            return _json(self.change_info(change, options))

    async def _related(self, request: Request) -> Response:
        """RelatedChangesInfo: here only the revision's direct git parents
        and children among changes (Gerrit lists the whole chain)."""
        if self._user(request) is None:
            return _unauthorized()
        change = self._change(request.path_params["change"])
        if change is None:
            return PlainTextResponse("Not found\n", status_code=404)
        ps = self._patchset(change, request.path_params["revision"])
        if ps is None:
            return PlainTextResponse("Not found\n", status_code=404)
        with self.state.lock:
            found = [(c, p) for c, p in self.state.depends_on(change)]
            found += [(c, c.current) for c in self.state.needed_by(change)]
            entries = [
                {
                    "project": other.project,
                    "change_id": other.change_id,
                    "commit": {
                        "commit": other_ps.commit.sha,
                        "parents": [{"commit": p} for p in other_ps.commit.parents],
                        "subject": other_ps.commit.subject,
                    },
                    "_change_number": other.number,
                    "_revision_number": other_ps.number,
                    "_current_revision_number": other.current.number,
                    "status": other.status,
                }
                for other, other_ps in found
            ]
        return _json({"changes": entries})

    async def _review(self, request: Request) -> Response:
        username = self._user(request)
        if username is None:
            return _unauthorized()
        change = self._change(request.path_params["change"])
        if change is None:
            return PlainTextResponse("Not found\n", status_code=404)
        patchset = self._patchset(change, request.path_params["revision"])
        if patchset is None:
            return PlainTextResponse("Not found\n", status_code=404)
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("invalid JSON\n", status_code=400)
        if not isinstance(body, dict):
            return PlainTextResponse("ReviewInput must be an object\n", status_code=400)
        message = body.get("message") or ""
        votes = body.get("labels") or {}
        tag = body.get("tag") or ""
        notify = body.get("notify") or "ALL"
        if (
            not isinstance(message, str)
            or not isinstance(votes, dict)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in votes.values())
            or not isinstance(tag, str)
            or (tag and not _TAG.fullmatch(tag))
            or not isinstance(notify, str)
        ):
            return PlainTextResponse("invalid ReviewInput\n", status_code=400)
        # The same logic as ``gerrit review`` (and the same record of it);
        # strict: Gerrit's REST API refuses a vote it cannot apply.
        argv = ["--strict-labels", "--notify", notify]
        if message:
            argv += ["--message", message]
        for name, value in votes.items():
            argv += ["--label", f"{name}={value}"]
        argv.append(f"{change.number},{patchset.number}")
        result = await run_in_threadpool(review.run, self.state, username, "REST review", argv)
        status = 200 if result.exit_status == 0 else 400
        with self._lock:
            self.reviews.append(
                RestReview(
                    username,
                    change.number,
                    patchset.number,
                    message,
                    dict(votes),
                    tag,
                    notify.upper(),
                    status,
                )
            )
        if status != 200:
            return PlainTextResponse(result.stderr, status_code=status)
        with self.state.lock:
            applied = {
                name: patchset.votes[labels.LABELS[name.lower()].name][username].value
                for name in votes
                if labels.lookup(name) is not None
            }
        return _json({"labels": applied} if applied else {})

    async def _submit(self, request: Request) -> Response:
        username = self._user(request)
        if username is None:
            return _unauthorized()
        change = self._change(request.path_params["change"])
        if change is None:
            return PlainTextResponse("Not found\n", status_code=404)
        with self.state.lock:
            target = f"{change.number},{change.current.number}"
        result = await run_in_threadpool(
            review.run, self.state, username, "REST submit", ["--submit", target]
        )
        if result.exit_status != 0:
            # Gerrit answers 409 Conflict when the change cannot be submitted.
            reason = result.stderr.split("\n", 1)[0].removeprefix("error: ")
            return PlainTextResponse(reason + "\n", status_code=409)
        with self.state.lock:
            return _json(self.change_info(change, set()))

    async def _plugins(self, request: Request) -> Response:
        if self._user(request) is None:
            return _unauthorized()
        plugins: dict[str, Any] = {}
        if self.events_log:
            plugins["events-log"] = {
                "id": "events-log",
                "version": "v3.10.0-sim",
                "index_url": "plugins/events-log/",
                "filename": "events-log.jar",
            }
        return _json(plugins)

    async def _events_log(self, request: Request) -> Response:
        if self._user(request) is None:
            return _unauthorized()
        if not self.events_log:
            return PlainTextResponse("Not found\n", status_code=404)
        # The plugin's docs separate t1 and t2 with ";" as well as "&".
        params: dict[str, str] = {}
        for part in re.split(r"[;&]", request.url.query):
            key, _, value = part.partition("=")
            params[unquote_plus(key)] = unquote_plus(value)
        try:
            t1 = _parse_time(params["t1"]) if params.get("t1") else None
            t2 = _parse_time(params["t2"]) if params.get("t2") else None
        except ValueError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        lines = []
        for event in self.state.events():
            at = event.get("eventCreatedOn")
            if not isinstance(at, (int, float)):
                continue
            if (t1 is not None and at < t1) or (t2 is not None and at > t2):
                continue
            lines.append(json.dumps(event) + "\n")
        return Response(
            "".join(lines),
            media_type="application/json;charset=UTF-8",
            headers={"Content-Disposition": "attachment"},
        )

    # -- shapes (the caller holds the state's lock) ----------------------------------

    def _patchset(self, change: Change, revision: str) -> PatchSet | None:
        with self.state.lock:
            if revision == "current":
                return change.current
            for ps in change.patchsets:
                if str(ps.number) == revision or (
                    len(revision) >= 4 and ps.commit.sha.startswith(revision)
                ):
                    return ps
        return None

    def change_info(self, change: Change, options: set[str]) -> dict[str, Any]:
        """Gerrit's ChangeInfo of ``change`` with the ``o=`` ``options`` asked for."""
        current = change.current
        info: dict[str, Any] = {
            "id": _triplet(change),
            "project": change.project,
            "branch": change.branch,
            "change_id": change.change_id,
            "subject": current.commit.subject,
            "status": change.status,
            "created": _timestamp(change.created_on),
            "updated": _timestamp(change.last_updated or change.created_on),
            "insertions": sum(added for _, _, added, _ in current.commit.files),
            "deletions": sum(removed for _, _, _, removed in current.commit.files),
            "_number": change.number,
            "owner": self._account(change.owner),
        }
        if change.topic:
            info["topic"] = change.topic
        if change.is_open:
            info["mergeable"] = True
        if "LABELS" in options or "DETAILED_LABELS" in options:
            info["labels"] = self._labels(current, "DETAILED_LABELS" in options)
            if "DETAILED_LABELS" in options:
                info["permitted_labels"] = {
                    label.name: [_value(v) for v in range(label.minimum, label.maximum + 1)]
                    for label in labels.LABELS.values()
                }
        if "SUBMIT_REQUIREMENTS" in options:
            # The SSH query's submit record in REST names (appliedBy, not by).
            record = query._submit_record(self.state, change)
            for item in record.get("labels", []):
                if "by" in item:
                    item["appliedBy"] = self._account(item.pop("by")["username"])
            info["submit_records"] = [{"rule_name": "gerrit~DefaultSubmitRule", **record}]
        if "MESSAGES" in options:
            info["messages"] = [
                {
                    "id": f"{change.number}-{i}",
                    "author": self._account(m.author),
                    "date": _timestamp(m.timestamp or change.last_updated),
                    "message": m.comment or m.text,
                    "_revision_number": m.patchset,
                }
                for i, m in enumerate(change.messages, 1)
            ]
        wanted: list[PatchSet] = []
        if "ALL_REVISIONS" in options:
            wanted = list(change.patchsets)
        elif "CURRENT_REVISION" in options:
            wanted = [current]
        if wanted:
            info["current_revision"] = current.commit.sha
            files = "ALL_FILES" in options or "CURRENT_FILES" in options
            info["revisions"] = {
                ps.commit.sha: self._revision(
                    change,
                    ps,
                    files and ("ALL_FILES" in options or ps is current),
                    "ALL_COMMITS" in options or "CURRENT_COMMIT" in options,
                )
                for ps in wanted
            }
        return info

    def _labels(self, patchset: PatchSet, detailed: bool) -> dict[str, Any]:
        votes = patchset.current_votes()
        out: dict[str, Any] = {}
        status = {name: (s, by) for name, s, by in labels.submit_status(votes)}
        for name in labels.ORDER:
            label = labels.LABELS[name.lower()]
            item: dict[str, Any] = {}
            state, by = status[name]
            if state == "OK" and by is not None:
                item["approved"] = self._account(by)
            elif state == "REJECT" and by is not None:
                item["rejected"] = self._account(by)
            if detailed:
                item["all"] = [
                    {**self._account(user), "value": vote.value}
                    for user, vote in patchset.votes.get(name, {}).items()
                ]
                item["values"] = {
                    _value(v): f"{name} {_value(v)}"
                    for v in range(label.minimum, label.maximum + 1)
                }
                item["default_value"] = 0
            out[name] = item
        return out

    def _revision(
        self, change: Change, ps: PatchSet, with_files: bool, with_commit: bool
    ) -> dict[str, Any]:
        commit = ps.commit
        rev: dict[str, Any] = {
            "kind": ps.kind,
            "_number": ps.number,
            "created": _timestamp(ps.created_on),
            "uploader": self._account(ps.uploader),
            "ref": ps.ref,
        }
        if with_commit:
            author = events.author_attr(self.state, ps)
            rev["commit"] = {
                "parents": [{"commit": p} for p in commit.parents],
                "author": {"name": author.get("name", ""), "email": author.get("email", "")},
                "subject": commit.subject,
                "message": commit.message,
            }
        if with_files:
            rev["files"] = {
                path: {
                    **({"status": kind[0]} if kind in ("ADDED", "DELETED", "RENAMED") else {}),
                    "lines_inserted": added,
                    "lines_deleted": removed,
                }
                for path, kind, added, removed in commit.files
            }
        return rev


class RestServer:
    """The REST API served on ``host:port`` from uvicorn's thread."""

    def __init__(self, api: RestApi, host: str, port: int = 0) -> None:
        self.api = api
        self._web = WebServer(api.app(), host, port)

    def start(self) -> None:
        """:raises ConfigError: the port cannot be listened on."""
        self._web.start()

    def stop(self) -> None:
        self._web.stop()

    @property
    def url(self) -> str:
        return self._web.url


def _triplet(change: Change) -> str:
    return f"{change.project.replace('/', '%2F')}~{change.branch}~{change.change_id}"


def _value(value: int) -> str:
    return f"{value:+d}" if value else " 0"


def _timestamp(seconds: float) -> str:
    """Gerrit's REST time: UTC, ``2013-02-21 11:16:36.775000000``."""
    at = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond * 1000:09d}"


def _parse_time(text: str) -> float:
    """``yyyy-MM-dd[ HH:mm:ss[.SSS]]`` as UTC seconds.

    :raises ValueError: another shape.
    """
    for shape in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            at = datetime.datetime.strptime(text.strip(), shape)
        except ValueError:
            continue
        return at.replace(tzinfo=datetime.UTC).timestamp()
    raise ValueError(f"not a date/time: {text[:40]!r}")


def _json(value: Any) -> Response:
    return Response(XSSI + json.dumps(value) + "\n", media_type="application/json")


def _unauthorized() -> Response:
    return PlainTextResponse(
        "Unauthorized\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="Gerrit Code Review"'},
    )
