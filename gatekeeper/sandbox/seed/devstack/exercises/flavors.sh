#!/usr/bin/env bash
# Flavors: the compute API's flavor table, read through nova's own code in
# $DEST/nova (a change that breaks nova's flavors fails the gate here).
source "$(dirname "$0")/../functions"
is_service_enabled n-api || exit 55
cd "$DEST/nova" || exit 1
python3 - <<'PYTHON'
from nova import vcpus_for

for flavor, vcpus in {"m1.tiny": 1, "m1.small": 1, "m1.medium": 2, "m1.large": 4}.items():
    got = vcpus_for(flavor)
    assert got == vcpus, f"{flavor} has {got} vcpus, not {vcpus}"
print("flavors: the four standard flavors are right")
PYTHON
