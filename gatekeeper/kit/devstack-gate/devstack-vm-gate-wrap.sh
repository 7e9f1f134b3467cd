#!/usr/bin/env bash
# The devstack job, node side: gatekeeper's devstack-vm-gate-wrap.sh.
#
# Phases, each timed on the console and logged to logs/devstack-gate-*.txt:
#   setup host -> setup workspace -> reproduce.sh -> pre_test_hook ->
#   gate_hook (killed when the build's time, less a buffer, runs out) ->
#   post_test_hook -> cleanup host (always, after a timeout too).
#
# Inputs: the ZUUL_* parameters, BUILD_TIMEOUT (milliseconds, as Jenkins
# gave it), the DEVSTACK_GATE_* variables (local-conf.sh has their
# defaults), GATEKEEPER_GIT_CACHE (the image's repositories, default
# /opt/git) and the hooks (exported functions, or files in the project under
# test). The exit status is the job's: the gate's, or the post-test hook's;
# 124 when the gate hook ran out of time (gatekeeper reports TIMED_OUT).

set -u

DG_KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=functions.sh
source "$DG_KIT/functions.sh"
# shellcheck source=local-conf.sh
source "$DG_KIT/local-conf.sh"

export WORKSPACE=${WORKSPACE:-$PWD}
cd "$WORKSPACE" || exit 1
DG_START=$(dg_now_us)
# DEVSTACK_GATE_TIMEOUT as the job set it (minutes), before any default.
DG_USER_TIMEOUT=${DEVSTACK_GATE_TIMEOUT:-}
export PYTHONUNBUFFERED=true

mkdir -p "$WORKSPACE/logs" "$WORKSPACE/.gatekeeper"
DG_STATE=$(mktemp -d "$WORKSPACE/.gatekeeper/dg.XXXXXX")
DG_ADMIN_PROBLEM=$(dg_admin_problem)
DG_ADMIN=1
[[ -n $DG_ADMIN_PROBLEM ]] && DG_ADMIN=0
# devstack's tree: /opt/stack on a host the job administers, else beside
# the workspace (the only place a confined node may write).
if [[ -z ${BASE:-} ]]; then
    if [[ $DG_ADMIN == 1 ]]; then BASE=/opt/stack; else BASE=$(dirname "$WORKSPACE")/opt/stack; fi
fi
# Where devstack writes service configuration (/etc/<service> on a real host).
if [[ -z ${ETC_DIR:-} ]]; then
    if [[ $DG_ADMIN == 1 ]]; then ETC_DIR=/etc; else ETC_DIR=$BASE/etc; fi
fi
export BASE ETC_DIR DG_ADMIN DG_ADMIN_PROBLEM DG_KIT DG_STATE WORKSPACE

dg_export_defaults
export SKIP_EXERCISES=${SKIP_EXERCISES:-boot_from_volume,bundle,client-env,euca}
if [[ -z ${TEMPEST_CONCURRENCY:-} ]]; then
    TEMPEST_CONCURRENCY=$(nproc)
    ((TEMPEST_CONCURRENCY > 3)) && TEMPEST_CONCURRENCY=$((TEMPEST_CONCURRENCY / 2))
    export TEMPEST_CONCURRENCY
fi

# The gate hook's time, in seconds: the build's timeout less a buffer for
# cleanup (DEVSTACK_GATE_TIMEOUT_BUFFER minutes, default 10, at most a
# quarter of the build), and no more than DEVSTACK_GATE_TIMEOUT if the job
# set it.
dg_gate_seconds() {
    local build=$((${BUILD_TIMEOUT:-0} / 1000)) buffer budget
    if ((build > 0)); then
        buffer=$((${DEVSTACK_GATE_TIMEOUT_BUFFER:-10} * 60))
        ((buffer > build / 4)) && buffer=$((build / 4))
        budget=$((build - buffer))
    else
        budget=$((DEVSTACK_GATE_TIMEOUT * 60))
    fi
    if [[ -n $DG_USER_TIMEOUT ]] && ((DG_USER_TIMEOUT * 60 < budget)); then
        budget=$((DG_USER_TIMEOUT * 60))
    fi
    echo $((budget - ($(dg_now_us) - DG_START) / 1000000))
}

DG_RESULT=0
DG_CLEANED=0
dg_finish() {
    local status=$?
    # Cleanup always runs once: at the end, or on an early exit or signal.
    [[ $DG_CLEANED == 1 ]] && return
    DG_CLEANED=1
    # An exit from inside a hook says how the job ended too.
    [[ $DG_RESULT == 0 ]] && DG_RESULT=$status
    export DG_RESULT
    dg_phase cleanup-host "cleanup host" dg_cleanup_host
    rm -rf "$DG_STATE"
    echo "== devstack-vm-gate-wrap: exit $DG_RESULT ($(dg_since "$DG_START") in all)"
}
trap 'dg_finish' EXIT
trap 'DG_RESULT=143; exit 143' TERM INT

echo "devstack-vm-gate-wrap (gatekeeper kit) on $(uname -n)"
if [[ -n ${ZUUL_CHANGE:-} ]]; then
    echo "Triggered by: change ${ZUUL_CHANGE} patchset ${ZUUL_PATCHSET:-?} of ${ZUUL_PROJECT:-?}"
fi
echo "Pipeline: ${ZUUL_PIPELINE:-none}; BASE=$BASE; gate time ${BUILD_TIMEOUT:-?} ms build timeout"
if [[ -f $WORKSPACE/.gatekeeper/node.env ]]; then
    sed 's/^/Node: /' "$WORKSPACE/.gatekeeper/node.env"
fi

# The [[local|localrc]] values and the hook lookup need the workspace: a
# setup failure ends the job before the gate (cleanup still runs).
dg_phase setup-host "setup host" dg_setup_host || { DG_RESULT=1; exit 1; }
dg_phase setup-workspace-new "setup workspace" dg_setup_workspace || { DG_RESULT=1; exit 1; }
if [[ -n ${DG_REPRODUCE_COMMITS:-} ]]; then
    dg_phase reproduce-check "compare with the build" dg_compare_commits
fi
dg_phase reproduce "write reproduce.sh" dg_write_reproduce

if [[ -n ${DEVSTACK_GATE_SETTINGS:-} && -f ${DEVSTACK_GATE_SETTINGS} ]]; then
    echo "sourcing DEVSTACK_GATE_SETTINGS $DEVSTACK_GATE_SETTINGS"
    # shellcheck disable=SC1090
    source "$DEVSTACK_GATE_SETTINGS"
fi

if ! dg_phase pre-test-hook "pre_test_hook" dg_run_hook pre_test_hook; then
    DG_RESULT=1
    exit 1
fi

DG_GATE_SECONDS=$(dg_gate_seconds)
if ((DG_GATE_SECONDS <= 0)); then
    echo "ERROR: no time left for the gate hook (the build's timeout has passed)"
    DG_RESULT=124
    exit 124
fi
echo "gate_hook has ${DG_GATE_SECONDS}s"
dg_phase gate-hook "gate_hook" dg_run_with_deadline "$DG_GATE_SECONDS" dg_run_hook gate_hook
DG_RESULT=$?
if [[ -e $DG_STATE/gate-timed-out ]]; then
    echo "ERROR: the gate hook ran out of time after ${DG_GATE_SECONDS}s and was killed"
    DG_RESULT=124
    exit 124
fi
if [[ $DG_RESULT != 0 ]]; then
    echo "ERROR: the main setup script run by this job failed - exit code: $DG_RESULT"
    exit "$DG_RESULT"
fi

dg_phase post-test-hook "post_test_hook" dg_run_hook post_test_hook
DG_RESULT=$?
exit "$DG_RESULT"
