"""Which driver has which optional capability: the pool, the reaper and the
CLI ask ``isinstance`` before they use one, so a driver that lost (or gained)
one would silently change what the pool does with it."""

from __future__ import annotations

import pytest

from gatekeeper.pool.providers.base import (
    BuildsImages,
    HasQuota,
    HoldsLaunches,
    Provider,
    Reapable,
    ReusableHosts,
    Stoppable,
    TakesKeys,
)
from gatekeeper.pool.providers.local import LocalProvider
from gatekeeper.pool.providers.openstack import OpenStackProvider
from gatekeeper.pool.providers.static import StaticProvider

ALL = (ReusableHosts, Reapable, BuildsImages, TakesKeys, HasQuota, Stoppable, HoldsLaunches)


@pytest.mark.parametrize(
    ("driver", "capabilities"),
    [
        (LocalProvider, {Reapable, BuildsImages}),
        (StaticProvider, {ReusableHosts}),
        (
            OpenStackProvider,
            {Reapable, BuildsImages, TakesKeys, HasQuota, Stoppable, HoldsLaunches},
        ),
    ],
    ids=["local", "static", "openstack"],
)
def test_driver_capabilities(driver: type[Provider], capabilities: set[type]) -> None:
    assert {c for c in ALL if issubclass(driver, c)} == capabilities


def test_the_base_has_no_capability() -> None:
    assert not any(issubclass(Provider, c) for c in ALL)
