"""What travels over Gearman between the scheduler and workers.

Functions:

- ``build:<job>``: run one build. Arguments are a JSON object of Zuul's
  parameter names (``ZUUL_UUID``, ``ZUUL_PROJECT``, ... ``LOG_PATH``), every
  value a string, plus one key ``gatekeeper`` holding the job's definition
  (so workers need no copy of the layout to run it).
- ``stop:<worker>``: abort a build running on that worker; arguments
  ``{"uuid": ...}``.

A worker sends one WORK_DATA packet when the build starts (which node,
which provider, where the logs will be) and finishes with WORK_COMPLETE
carrying the result (a NODE_FAILURE also carries ``node_wait``: what the
pool had when the worker gave up waiting); WORK_FAIL or WORK_EXCEPTION mean the worker itself
broke (or stopped before the build could end): the dispatcher runs the
build again, up to the job's ``attempts``, and then reports RETRY_LIMIT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gatekeeper.errors import DispatchError
from gatekeeper.model.results import CompleteData, NodeWait, StartData

BUILD_PREFIX = "build:"
STOP_PREFIX = "stop:"
JOB_KEY = "gatekeeper"


def build_function(job: str) -> str:
    return f"{BUILD_PREFIX}{job}"


def stop_function(worker: str) -> str:
    return f"{STOP_PREFIX}{worker}"


@dataclass
class JobSpec:
    """How to run a job: what the layout says, carried with the build."""

    name: str
    run: str
    node: str
    logs: list[str] = field(default_factory=list)
    #: Seconds the command may run; 0 means the worker's default (site config).
    timeout: float = 3600.0
    # Every project cloned into the workspace, in this order.
    projects: list[str] = field(default_factory=list)
    #: Which try of the build this is (1-based); the dispatcher sets it on a retry.
    attempt: int = 1


def encode_build(params: dict[str, str], spec: JobSpec) -> str:
    payload: dict[str, Any] = dict(params)
    payload[JOB_KEY] = asdict(spec)
    return json.dumps(payload)


def decode_build(text: str) -> tuple[dict[str, str], JobSpec]:
    """:raises DispatchError: the arguments are not a build we can run."""
    try:
        payload = json.loads(text)
        spec = JobSpec(**payload.pop(JOB_KEY))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DispatchError(f"malformed build arguments: {exc}") from exc
    params = {str(k): str(v) for k, v in payload.items()}
    return params, spec


def encode(data: StartData | CompleteData) -> str:
    return json.dumps(asdict(data))


def decode_start(text: str) -> StartData:
    try:
        return StartData(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise DispatchError(f"malformed WORK_DATA: {exc}") from exc


def decode_complete(text: str) -> CompleteData:
    try:
        data = CompleteData(**json.loads(text))
        if data.node_wait is not None:
            data.node_wait = NodeWait(**data.node_wait)  # type: ignore[arg-type]
        return data
    except (ValueError, TypeError) as exc:
        raise DispatchError(f"malformed WORK_COMPLETE: {exc}") from exc
