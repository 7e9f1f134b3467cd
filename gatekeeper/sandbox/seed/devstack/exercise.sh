#!/usr/bin/env bash
# Stand-in devstack's exercise.sh: run exercises/*.sh except those named in
# SKIP_EXERCISES (comma-separated); exit 55 is a skip. Prints devstack's
# summary and exits 1 if any failed.
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
source "$TOP_DIR/functions"
load_localrc
export DEST ENABLED_SERVICES ETC_DIR SCREEN_LOGDIR
passes="" failures="" skips=""
for script in "$TOP_DIR"/exercises/*.sh; do
    name=$(basename "$script" .sh)
    if [[ ,${SKIP_EXERCISES:-}, == *,$name,* ]]; then
        skips+=" $name"
        continue
    fi
    echo "*** Running $name"
    bash "$script"
    status=$?
    if [[ $status -eq 55 ]]; then
        skips+=" $name"
    elif [[ $status -eq 0 ]]; then
        passes+=" $name"
    else
        failures+=" $name"
    fi
done
echo "====================================================================="
for name in $skips; do echo "SKIP $name"; done
for name in $passes; do echo "PASS $name"; done
for name in $failures; do echo "FAILED $name"; done
echo "====================================================================="
[[ -z $failures ]]
