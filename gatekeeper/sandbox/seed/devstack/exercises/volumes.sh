#!/usr/bin/env bash
# The compute service has its configuration where devstack put it.
source "$(dirname "$0")/../functions"
is_service_enabled n-api || exit 55
grep -q "name = n-api" "$ETC_DIR/nova/nova.conf"
echo "nova.conf is in place"
