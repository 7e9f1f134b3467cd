"""Build parameters for changes and ref updates, and layout parameter functions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gatekeeper.model.change import Change
from gatekeeper.scheduler.params import build_params, call_parameter_function

pytestmark = pytest.mark.timeout(30)

CHANGE = Change("openstack/nova", "master", 123456, 3, ref="refs/changes/56/123456/3")
NEW = "ab" + "c" * 38
REF = Change(
    "openstack/nova", "master", 0, 0, ref="refs/heads/master", old_rev="1" * 40, new_rev=NEW
)


def test_change_params() -> None:
    params = build_params(CHANGE, [], "check", "unit", "f" * 32, "ssh://gerrit")
    assert params["LOG_PATH"] == f"56/123456/3/check/unit/{'f' * 7}"
    assert params["ZUUL_CHANGES"] == "openstack/nova:master:refs/changes/56/123456/3"
    assert "ZUUL_NEWREV" not in params


def test_ref_params_follow_zuul() -> None:
    params = build_params(REF, [], "post", "tarball", "e" * 32, "ssh://gerrit")
    assert params["LOG_PATH"] == f"ab/{NEW}/post/tarball/{'e' * 7}"
    assert params["BASE_LOG_PATH"] == f"ab/{NEW}"
    assert params["ZUUL_NEWREV"] == NEW and params["ZUUL_OLDREV"] == "1" * 40
    assert params["ZUUL_REF"] == "refs/heads/master"
    assert "ZUUL_CHANGE" not in params and "ZUUL_CHANGES" not in params


def test_zuul_v2_functions_tell_changes_from_refs() -> None:
    def set_log_url(item: Any, job: Any, params: dict[str, Any]) -> None:
        # The shape of OpenStack's own parameter function.
        if hasattr(item.change, "refspec"):
            path = f"{params['ZUUL_CHANGE'][-2:]}/{params['ZUUL_CHANGE']}"
        else:
            path = f"{params['ZUUL_NEWREV'][:2]}/{params['ZUUL_NEWREV']}"
        params["LOG_PATH"] = f"{path}/{job.name}"
        params["OFFLINE_NODE_WHEN_COMPLETE"] = 1

    job = SimpleNamespace(name="unit")
    for change, expected in ((CHANGE, "56/123456/unit"), (REF, f"ab/{NEW}/unit")):
        params = build_params(change, [], "check", "unit", "f" * 32, "")
        call_parameter_function(set_log_url, SimpleNamespace(change=change), job, params)
        assert params["LOG_PATH"] == expected
        assert params["OFFLINE_NODE_WHEN_COMPLETE"] == "1"


def test_bad_parameter_functions_are_value_errors() -> None:
    def too_many(a: Any, b: Any, c: Any, d: Any) -> None: ...

    def raises(item: Any, job: Any, params: Any) -> None:
        raise KeyError("ZUUL_NEWREV")

    with pytest.raises(ValueError, match="takes 4 arguments"):
        call_parameter_function(too_many, None, None, {})
    with pytest.raises(ValueError, match="raised KeyError"):
        call_parameter_function(raises, None, None, {})
