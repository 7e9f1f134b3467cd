"""Fuzz: what comes back over Gearman (a worker's WORK_DATA and
WORK_COMPLETE, a build's arguments, a server's answer to ``status``) gives
a value typed as declared or DispatchError, nothing else."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeeper.dispatch.protocol import (
    JOB_KEY,
    JobSpec,
    decode_build,
    decode_complete,
    decode_start,
    encode,
    encode_build,
    parse_status,
)
from gatekeeper.errors import DispatchError
from gatekeeper.model.results import CompleteData, StartData
from tests.fuzz.shapes import assert_conforms, edge_values, hostile_text, json_values, mutated

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

START = json.loads(
    encode(StartData("u1", "w1", "node-1", "local", "file:///logs/1/", 1480000000.5))
)
COMPLETE = json.loads(
    encode(CompleteData("u1", "SUCCESS", "file:///logs/1/", "node-1", "local", "w1", 1.0, 2.0))
)
BUILD = json.loads(
    encode_build(
        {"ZUUL_UUID": "u1", "ZUUL_PROJECT": "openstack/nova", "LOG_PATH": "56/123456/2/check"},
        JobSpec("gate-nova-pep8", "tox -e pep8", "trusty", ["logs/**"], 600.0, ["openstack/nova"]),
    )
)


def decoded(decode: Any, text: str, hint: Any) -> None:
    try:
        value = decode(text)
    except DispatchError:
        return
    assert_conforms(value, hint)


@SETTINGS
@given(st.data())
def test_mutated_packets(data: st.DataObject) -> None:
    decoded(decode_start, json.dumps(data.draw(mutated([START]))), StartData)
    decoded(decode_complete, json.dumps(data.draw(mutated([COMPLETE]))), CompleteData)
    try:
        params, spec = decode_build(json.dumps(data.draw(mutated([BUILD]))))
    except DispatchError:
        return
    assert_conforms(params, dict[str, str])
    assert_conforms(spec, JobSpec)


@SETTINGS
@given(hostile_text | json_values.map(json.dumps))
def test_any_text(text: str) -> None:
    decoded(decode_start, text, StartData)
    decoded(decode_complete, text, CompleteData)
    decoded(decode_build, text, tuple[dict[str, str], JobSpec])


@SETTINGS
@example({"uuid": "u", "result": math.nan})  # untyped fields were taken as they came
@example({"uuid": "u", "worker": "w", "node": "n", "provider": "p", "url": "", "started_at": 1e999})
@example({"name": "j", "run": "true", "node": "n", "timeout": math.nan})
@given(
    st.dictionaries(
        st.sampled_from([*START, *COMPLETE, *BUILD[JOB_KEY], "extra"]),
        edge_values | json_values,
        max_size=10,
    )
)
def test_packets_of_any_fields(packet: dict[str, Any]) -> None:
    text = json.dumps(packet)
    decoded(decode_start, text, StartData)
    decoded(decode_complete, text, CompleteData)
    decoded(
        decode_build,
        json.dumps({"ZUUL_UUID": "u", JOB_KEY: packet}),
        tuple[dict[str, str], JobSpec],
    )


def test_a_real_packet_round_trips() -> None:
    assert asdict(decode_start(json.dumps(START))) == START
    assert asdict(decode_complete(json.dumps(COMPLETE))) == COMPLETE
    params, spec = decode_build(json.dumps(BUILD))
    assert asdict(spec) == BUILD[JOB_KEY] and params["ZUUL_PROJECT"] == "openstack/nova"


STATUS_LINE = st.lists(
    st.text(max_size=20)
    | st.sampled_from(["build:noop", "0", "3", "\u00b2", "\u0661", " 7 ", "-1"]),
    min_size=1,
    max_size=5,
).map("\t".join)


@SETTINGS
@given(st.lists(STATUS_LINE, max_size=6), st.binary(max_size=40))
def test_status_answers(lines: list[str], noise: bytes) -> None:
    for response in ("\n".join(lines).encode(), noise, "\n".join(lines).encode() + noise):
        workers = parse_status(response)
        assert_conforms(workers, dict[str, int])
        assert all(count >= 0 for count in workers.values())


def test_status_of_a_real_server_shape() -> None:
    answer = b"build:noop\t0\t0\t2\nbuild:pep8\t1\t0\t0\nbuild:noop\t0\t0\t1\n.\n"
    assert parse_status(answer) == {"build:noop": 3, "build:pep8": 0}
