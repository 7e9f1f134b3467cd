"""The scheduler's status snapshot in the shape of Zuul v2.5's ``status.json``.

Old tools that read Zuul's status (dashboards, bots, the jQuery page) read
ours: the keys, nesting and units are v2.5's (item times in milliseconds,
job launch/start/end/estimated times in seconds, ``heads`` as chains of
items each tested on top of the one before). What gatekeeper adds lives
under keys v2.5 did not have. A pure function of the snapshot that
``scheduler.operations.status`` makes; it runs in the web's threads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gatekeeper import __version__

__all__ = ["item_id", "matching_items", "to_zuul"]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def item_id(item: Mapping[str, Any]) -> str | None:
    """``"number,patchset"``; a ref update's new revision; None for neither."""
    if item.get("change"):
        return str(item["change"])
    return str(item.get("newrev") or "") or None


def _job(
    name: str,
    build: Mapping[str, Any] | None,
    info: Mapping[str, Any],
    pipeline: str,
    base_url: str,
    now: float,
) -> dict[str, Any]:
    voting = bool(build["voting"]) if build is not None else bool(info.get("voting", True))
    if build is None:
        # Not launched yet: every build field null, as v2.5 shows it.
        return {
            "name": name,
            "url": None,
            "report_url": None,
            "result": None,
            "voting": voting,
            "elapsed_time": None,
            "remaining_time": None,
            "uuid": None,
            "launch_time": None,
            "start_time": None,
            "end_time": None,
            "estimated_time": None,
            "pipeline": None,
            "canceled": None,
            "retry": None,
            "number": None,
            "node_labels": None,
            "node_name": None,
            "worker": None,
        }
    estimated = info.get("estimated")
    started, ended = build["started_at"], build["ended_at"]
    elapsed: float | None = None
    remaining: float | None = None
    if build["result"] is not None:
        remaining = 0.0
        if started is not None:
            elapsed = max(0.0, (ended or now) - started)
    elif started is not None:
        elapsed = max(0.0, now - started)
        if estimated:
            remaining = max(0.0, estimated - elapsed)
    page = f"{base_url}build/{build['uuid']}"
    return {
        "name": name,
        # The build's page: its live console while it runs, its logs after.
        "url": page,
        "report_url": build["url"] or page,
        "result": build["result"],
        "voting": voting,
        "elapsed_time": _ms(elapsed),
        "remaining_time": _ms(remaining),
        "uuid": build["uuid"],
        "launch_time": build["dispatched_at"],
        "start_time": started,
        "end_time": ended,
        "estimated_time": estimated,
        "pipeline": pipeline,
        "canceled": bool(build["canceled"]),
        "retry": False,
        # Jenkins' build number: gatekeeper's builds have none.
        "number": None,
        "node_labels": [info["node"]] if info.get("node") else [],
        "node_name": build["node"] or None,
        "worker": {
            "name": build["worker"] or None,
            "hostname": None,
            "ips": [],
            "fqdn": None,
            "program": "gatekeeper",
            "version": __version__,
            "extra": {"provider": build["provider"] or None},
        },
    }


def _item(
    item: Mapping[str, Any],
    pipeline: str,
    jobs_info: Mapping[str, Any],
    base_url: str,
    now: float,
) -> dict[str, Any]:
    builds = {b["job"]: b for b in item["builds"]}
    jobs = [
        _job(name, builds.get(name), jobs_info.get(name, {}), pipeline, base_url, now)
        for name in item["jobs"]
    ]
    # gatekeeper's own: a job not launched because its mutex is held.
    waiting = item.get("waiting_for_mutex") or {}
    for job in jobs:
        job["waiting_for_mutex"] = waiting.get(job["name"])
    # Known once every job has started: the longest a job still has to run.
    # (v2.5 counted a running job without an estimate as 0; it is unknown.)
    known = all(j["remaining_time"] is not None for j in jobs)
    remaining = max((j["remaining_time"] for j in jobs), default=0) if known else None
    owner = item.get("owner") or ""
    return {
        "id": item_id(item),
        "url": item["url"] or None,
        "project": item["project"],
        # Gerrit's owner record; gatekeeper keeps the username only.
        "owner": {"name": owner, "email": None, "username": owner} if owner else None,
        "enqueue_time": _ms(item["enqueued_at"]),
        "remaining_time": remaining,
        "active": bool(item["active"]),
        "live": True,
        "item_ahead": None,
        "items_behind": [],
        "failing_reasons": list(item.get("failing_reasons", [])),
        "zuul_ref": item["zuul_ref"] or None,
        "jobs": jobs,
        # gatekeeper's own.
        "branch": item.get("branch"),
        "subject": item.get("subject"),
        "ref": item.get("ref"),
        "merge_state": item.get("merge"),
    }


def _chains(items: list[Mapping[str, Any]], rendered: list[dict[str, Any]]) -> list[list[Any]]:
    """The queue's items as chains: each item follows the nearest item ahead
    that its builds are tested on; one with none starts a chain."""
    by_key = {item["key"]: out for item, out in zip(items, rendered, strict=True)}
    chains: list[list[dict[str, Any]]] = []
    chain_of: dict[int, list[dict[str, Any]]] = {}
    for item, out in zip(items, rendered, strict=True):
        ahead = None
        for key in reversed(item.get("tested_with") or []):
            ahead = by_key.get(key)
            if ahead is not None:
                break
        if ahead is None:
            chain: list[dict[str, Any]] = [out]
            chains.append(chain)
        else:
            out["item_ahead"] = ahead["id"]
            ahead["items_behind"].append(out["id"])
            chain = chain_of[id(ahead)]
            chain.append(out)
            # The item cannot finish before the one it is tested on.
            if out["remaining_time"] is not None and ahead["remaining_time"] is not None:
                out["remaining_time"] = max(out["remaining_time"], ahead["remaining_time"])
        chain_of[id(out)] = chain
    return chains


def to_zuul(snapshot: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Zuul v2.5's ``status.json`` from the scheduler's status snapshot."""
    now = float(snapshot.get("time") or time.time())
    jobs_info: Mapping[str, Any] = snapshot.get("job_info", {})
    lengths: Mapping[str, int] = snapshot.get("event_queues", {})
    pipelines = []
    for pipeline in snapshot.get("pipelines", []):
        name = pipeline["name"]
        queues = []
        for queue in pipeline["queues"]:
            items = queue["items"]
            rendered = [_item(i, name, jobs_info, base_url, now) for i in items]
            if queue.get("window") is None:
                # An independent pipeline: every item is a queue of its own.
                for item, out in zip(items, rendered, strict=True):
                    queues.append({"name": item["project"], "window": 0, "heads": [[out]]})
                continue
            queues.append(
                {
                    "name": queue["name"],
                    "window": queue["window"],
                    "heads": _chains(items, rendered),
                }
            )
        for queue in pipeline.get("empty_queues", []):
            queues.append({"name": queue["name"], "window": queue["window"], "heads": []})
        pipelines.append(
            {
                "name": name,
                "description": pipeline.get("description", ""),
                "change_queues": queues,
                "manager": pipeline.get("manager"),
                # gatekeeper's own: disable-after-consecutive-failures tripped.
                "disabled": bool(pipeline.get("disabled")),
            }
        )
    status: dict[str, Any] = {
        "zuul_version": __version__,
        "trigger_event_queue": {"length": lengths.get("trigger", 0)},
        "result_event_queue": {"length": lengths.get("result", 0)},
        "pipelines": pipelines,
        # gatekeeper's own.
        "management_event_queue": {"length": lengths.get("management", 0)},
        "refused_results": snapshot.get("refused_results", 0),
        "status_time": _ms(now),
    }
    if snapshot.get("last_reconfigured"):
        status["last_reconfigured"] = _ms(snapshot["last_reconfigured"])
    return status


def matching_items(status: Mapping[str, Any], change: str) -> list[dict[str, Any]]:
    """Every item of ``change`` (``"number,patchset"``) in every pipeline, flat."""
    return [
        item
        for pipeline in status["pipelines"]
        for queue in pipeline["change_queues"]
        for chain in queue["heads"]
        for item in chain
        if item["id"] == change
    ]
