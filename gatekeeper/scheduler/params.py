"""Build parameters, under the names Zuul gave them (devstack-gate reads these)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from gatekeeper.config.layout_schema import JobConfig
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.model.patterns import change_values
from gatekeeper.scheduler.swift import SwiftSigner

log = logging.getLogger(__name__)


def base_log_path(change: Change) -> str:
    """``<last 2 digits of change>/<change>/<patchset>``; for a ref update
    ``<first 2 of newrev>/<newrev>``, as Zuul laid them out; nothing for a
    timer's item (Zuul's periodic logs went to ``<pipeline>/<job>/<uuid[:7]>``)."""
    if change.is_branch_tip:
        return ""
    if change.is_ref:
        return f"{change.new_rev[:2]}/{change.new_rev}"
    number = str(change.number)
    return f"{number[-2:]}/{number}/{change.patchset}"


def log_path(change: Change, pipeline: str, job: str, uuid: str) -> str:
    base = base_log_path(change)
    return f"{base}/{pipeline}/{job}/{uuid[:7]}" if base else f"{pipeline}/{job}/{uuid[:7]}"


def build_params(
    change: Change,
    changes_ahead: list[Change],
    pipeline: str,
    job: str,
    uuid: str,
    zuul_url: str,
) -> dict[str, str]:
    """Every parameter a build gets, as strings.

    ``changes_ahead`` are the changes the build must include before this one,
    in queue order (empty in an independent pipeline).
    """
    params = {
        "ZUUL_UUID": uuid,
        "ZUUL_PROJECT": change.project,
        "ZUUL_PIPELINE": pipeline,
        "ZUUL_BRANCH": change.branch,
        "ZUUL_REF": change.ref,
        "ZUUL_URL": zuul_url,
        "ZUUL_SHORT_PROJECT_NAME": change.project.split("/")[-1],
        "ZUUL_JOB": job,
        "LOG_PATH": log_path(change, pipeline, job, uuid),
        "BASE_LOG_PATH": base_log_path(change),
    }
    if change.is_branch_tip:
        # A timer's item: the branch as it is when the workspace is made
        # (Zuul v2.5 sent no revision for these either).
        return params
    if change.is_ref:
        params.update(
            ZUUL_OLDREV=change.old_rev, ZUUL_NEWREV=change.new_rev, ZUUL_COMMIT=change.new_rev
        )
        return params
    changes = [*changes_ahead, change]
    params.update(
        ZUUL_CHANGE=str(change.number),
        ZUUL_PATCHSET=str(change.patchset),
        ZUUL_COMMIT=change.revision,
        ZUUL_CHANGES="^".join(f"{c.project}:{c.branch}:{c.ref}" for c in changes),
        ZUUL_CHANGE_IDS=" ".join(f"{c.number},{c.patchset}" for c in changes),
    )
    return params


def swift_params(
    signer: SwiftSigner, job: JobConfig, change: Change, pipeline: str, params: dict[str, str]
) -> dict[str, str]:
    """The ``SWIFT_<name>_*`` parameters of ``job``'s ``swift:`` targets for a
    build with ``params`` (its ``LOG_PATH`` is where it uploads)."""
    values = {**change_values(change), "pipeline.name": pipeline, "job.name": job.name}
    return signer.params(job.swift, params["LOG_PATH"], lambda name: values.get(name, ""))


def call_parameter_function(
    function: Callable[..., object], item: QueueItem, job: JobConfig, params: dict[str, str]
) -> None:
    """Let a layout's ``parameter-function`` change ``params`` in place.

    Called as ``f(item, job, params)``, or ``f(item, params)`` for the
    two-argument functions of early Zuul layouts. Values it sets are made
    strings; a value set to None removes the parameter.

    :raises ValueError: the function raised, or takes neither form.
    """
    try:
        arity = len(inspect.signature(function).parameters)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot inspect {function!r}: {exc}") from exc
    try:
        if arity == 3:
            function(item, job, params)
        elif arity == 2:
            function(item, params)
        else:
            raise ValueError(f"takes {arity} arguments; expected (item, job, params)")
    except ValueError:
        raise
    except Exception as exc:  # the layout's own code: anything may come out
        raise ValueError(f"raised {exc!r}") from exc
    for key, value in list(params.items()):
        if value is None:
            del params[key]
        elif not isinstance(value, str):
            params[key] = str(value)
