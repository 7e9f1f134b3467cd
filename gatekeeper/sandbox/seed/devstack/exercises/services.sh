#!/usr/bin/env bash
# Every enabled service is running and has logged since it started.
source "$(dirname "$0")/../functions"
for service in key n-api; do
    is_service_enabled "$service" || continue
    pid=$(cat "$DEST/status/$service.pid")
    kill -0 "$pid" || { echo "$service (pid $pid) is not running"; exit 1; }
    grep -q started "$SCREEN_LOGDIR/screen-$service.log" || exit 1
    echo "$service is running (pid $pid)"
done
