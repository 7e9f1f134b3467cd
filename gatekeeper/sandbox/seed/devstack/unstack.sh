#!/usr/bin/env bash
# Stand-in devstack's unstack.sh: stop the services stack.sh started.
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
source "$TOP_DIR/functions"
load_localrc
for pidfile in "$DEST"/status/*.pid; do
    [[ -e $pidfile ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null && echo "stopped $(basename "$pidfile" .pid)"
    rm -f "$pidfile"
done
rm -f "$TOP_DIR/.stack-ran"
