"""What travels over Gearman between the scheduler and workers.

Functions:

- ``build:<job>``: run one build. Arguments are a JSON object of Zuul's
  parameter names (``ZUUL_UUID``, ``ZUUL_PROJECT``, ... ``LOG_PATH``), every
  value a string, plus one key ``gatekeeper`` holding the job's definition
  (so workers need no copy of the layout to run it).
- ``stop:<worker>``: abort a build running on that worker; arguments
  ``{"uuid": ..., "handle": ...}``, the Gearman handle (optional) naming
  which run of the build to abort when it may have been submitted again.

A worker sends one WORK_DATA packet when the build starts (which node,
which provider, where the logs will be) and finishes with WORK_COMPLETE
carrying the result (a NODE_FAILURE also carries ``node_wait``: what the
pool had when the worker gave up waiting; a FAILURE may carry
``recognised``: the known failures found in its logs); WORK_FAIL or
WORK_EXCEPTION mean the worker itself broke (or stopped before the build
could end): the dispatcher runs the build again, up to the job's
``attempts``, and then reports RETRY_LIMIT.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from gatekeeper.errors import DispatchError
from gatekeeper.model.outside import shown
from gatekeeper.model.results import CompleteData, NodeWait, Recognised, StartData

_T = TypeVar("_T")

# No count, attempt or time of ours is this large (and it would not fit the
# database's integers, or a float without loss).
_INT_LIMIT = 2**63

BUILD_PREFIX = "build:"
STOP_PREFIX = "stop:"
JOB_KEY = "gatekeeper"
#: The most known failures one WORK_COMPLETE may name (one per signature).
MAX_RECOGNISED = 100


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


def _load(text: str | bytes, what: str) -> Any:
    """:raises DispatchError: ``text`` is not JSON Python can read."""
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise DispatchError(f"malformed {what}: {shown(exc)}") from exc
    except RecursionError:
        raise DispatchError(f"malformed {what}: JSON nested too deeply") from None


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value is what a field of ours declares."""
    if hint in ("str", str):
        return isinstance(value, str)
    if hint in ("int", int):
        return type(value) is int and -_INT_LIMIT < value < _INT_LIMIT
    if hint in ("float", float):
        if type(value) is int:
            return -_INT_LIMIT < value < _INT_LIMIT
        return type(value) is float and math.isfinite(value)
    if hint in ("float | None",):
        return value is None or _fits(value, float)
    if hint in ("list[str]",):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise AssertionError(f"no check for a field of type {hint!r}")  # pragma: no cover


def _typed(cls: type[_T], data: Any, what: str) -> _T:
    """``cls(**data)``, each field checked for the type ``cls`` declares.

    A worker's packet is outside input: a result of the wrong type would
    reach the database and the report; a time that is NaN would break every
    comparison made with it.

    :raises DispatchError: not an object, an unknown or missing field, or a
        field of the wrong type.
    """
    if not isinstance(data, dict):
        raise DispatchError(f"malformed {what}: not a JSON object")
    hints = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        if key not in hints:
            raise DispatchError(f"malformed {what}: unknown field {shown(key, 60)!r}")
        if not _fits(value, hints[key]):
            raise DispatchError(
                f"malformed {what}: {key} should be {hints[key]}, got {type(value).__name__}"
            )
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise DispatchError(f"malformed {what}: {shown(exc)}") from exc


def decode_build(text: str) -> tuple[dict[str, str], JobSpec]:
    """:raises DispatchError: the arguments are not a build we can run."""
    payload = _load(text, "build arguments")
    if not isinstance(payload, dict):
        raise DispatchError("malformed build arguments: not a JSON object")
    spec = _typed(JobSpec, payload.pop(JOB_KEY, None), "build arguments' job")
    params: dict[str, str] = {}
    for key, value in payload.items():
        # Every value a string, as Zuul's parameters are; a number or a
        # boolean a parameter function set is written as one.
        if isinstance(value, dict | list):
            raise DispatchError(f"malformed build arguments: {shown(key, 60)} is not a string")
        params[key] = value if isinstance(value, str) else str(value)
    return params, spec


def encode(data: StartData | CompleteData) -> str:
    return json.dumps(asdict(data))


def decode_start(text: str) -> StartData:
    """:raises DispatchError: not a WORK_DATA packet of ours."""
    return _typed(StartData, _load(text, "WORK_DATA"), "WORK_DATA")


def decode_complete(text: str) -> CompleteData:
    """:raises DispatchError: not a WORK_COMPLETE packet of ours."""
    payload = _load(text, "WORK_COMPLETE")
    wait = payload.pop("node_wait", None) if isinstance(payload, dict) else None
    recognised = payload.pop("recognised", []) if isinstance(payload, dict) else []
    data = _typed(CompleteData, payload, "WORK_COMPLETE")
    if wait is not None:
        data.node_wait = _typed(NodeWait, wait, "WORK_COMPLETE's node_wait")
    if not isinstance(recognised, list) or len(recognised) > MAX_RECOGNISED:
        raise DispatchError(
            f"malformed WORK_COMPLETE: recognised is not a list of at most {MAX_RECOGNISED}"
        )
    data.recognised = [_typed(Recognised, r, "WORK_COMPLETE's recognised") for r in recognised]
    return data


def parse_status(response: bytes) -> dict[str, int]:
    """Workers per function in the answer to Gearman's ``status`` admin command.

    Each line is ``function<TAB>queued<TAB>running<TAB>workers``; a line of
    another shape is left out, never an error (the answer comes from a server
    that may be someone else's).
    """
    workers: dict[str, int] = {}
    for line in response.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        count = parts[3].strip()
        # isdigit() alone lets "²" through, which int() refuses.
        if count.isascii() and count.isdigit() and len(count) < 10:
            workers[parts[0]] = workers.get(parts[0], 0) + int(count)
    return workers
