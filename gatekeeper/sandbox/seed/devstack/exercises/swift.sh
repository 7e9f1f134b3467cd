#!/usr/bin/env bash
# Object storage: skipped (55) unless a swift proxy is running. devstack-gate
# enables s-proxy by default; the stand-in never starts it, so this is the
# exercise that shows a skip.
source "$(dirname "$0")/../functions"
if [[ ! -f $DEST/status/s-proxy.pid ]]; then
    is_service_enabled s-proxy && echo "s-proxy is enabled, but the stand-in does not run it"
    exit 55
fi
pid=$(cat "$DEST/status/s-proxy.pid")
kill -0 "$pid" || { echo "s-proxy (pid $pid) is not running"; exit 1; }
