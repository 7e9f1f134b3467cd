#!/usr/bin/env bash
# Object storage: skipped (55) unless swift is enabled, which the stand-in never is.
source "$(dirname "$0")/../functions"
is_service_enabled s-proxy || exit 55
exit 1
