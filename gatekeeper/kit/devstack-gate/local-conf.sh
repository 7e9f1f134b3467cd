#!/usr/bin/env bash
# A minimal stand-in for the DEVSTACK_GATE_* -> local.conf generator, kept
# in the kit engineer's branch until the full generator (and its variable
# matrix) is merged: the same three functions, a handful of variables.
#
# dg_export_defaults          export every supported DEVSTACK_GATE_* with its default
# dg_write_local_conf DIR     write DIR/local.conf from the variables
# dg_tempest_tox_env          print the tox environment the tempest flags choose

dg_export_defaults() {
    export DEVSTACK_GATE_TEMPEST=${DEVSTACK_GATE_TEMPEST:-0}
    export DEVSTACK_GATE_TEMPEST_FULL=${DEVSTACK_GATE_TEMPEST_FULL:-0}
    export DEVSTACK_GATE_TEMPEST_ALL=${DEVSTACK_GATE_TEMPEST_ALL:-0}
    export DEVSTACK_GATE_TEMPEST_REGEX=${DEVSTACK_GATE_TEMPEST_REGEX:-}
    export DEVSTACK_GATE_EXERCISES=${DEVSTACK_GATE_EXERCISES:-0}
    export DEVSTACK_GATE_CLEAN_LOGS=${DEVSTACK_GATE_CLEAN_LOGS:-1}
    export DEVSTACK_GATE_REMOVE_STACK_SUDO=${DEVSTACK_GATE_REMOVE_STACK_SUDO:-1}
    export DEVSTACK_GATE_VIRT_DRIVER=${DEVSTACK_GATE_VIRT_DRIVER:-libvirt}
    export DEVSTACK_GATE_PROJECTS_OVERRIDE=${DEVSTACK_GATE_PROJECTS_OVERRIDE:-}
    export DEVSTACK_LOCAL_CONFIG=${DEVSTACK_LOCAL_CONFIG:-}
    export DEVSTACK_PROJECT_FROM_GIT=${DEVSTACK_PROJECT_FROM_GIT:-}
    if [[ -z ${DEVSTACK_GATE_TIMEOUT:-} && -n ${BUILD_TIMEOUT:-} ]]; then
        export DEVSTACK_GATE_TIMEOUT=$((BUILD_TIMEOUT / 60000))
    fi
    export DEVSTACK_GATE_TIMEOUT=${DEVSTACK_GATE_TIMEOUT:-60}
}

dg_write_local_conf() {
    local dir=$1
    {
        echo "[[local|localrc]]"
        echo "DEST=$BASE/new"
        echo "ADMIN_PASSWORD=secret"
        echo "DATABASE_PASSWORD=secret"
        echo "RABBIT_PASSWORD=secret"
        echo "SERVICE_PASSWORD=secret"
        echo "SERVICE_TOKEN=111222333444"
        echo "ERROR_ON_CLONE=True"
        echo "LOGFILE=$BASE/new/devstacklog.txt"
        echo "SCREEN_LOGDIR=$BASE/new/screen-logs"
        echo "VERBOSE=True"
        echo "LOG_COLOR=False"
        echo "VIRT_DRIVER=$DEVSTACK_GATE_VIRT_DRIVER"
        if [[ $DEVSTACK_GATE_TEMPEST == 1 ]]; then
            echo "ENABLED_SERVICES+=,tempest"
        fi
        if [[ -n $DEVSTACK_PROJECT_FROM_GIT ]]; then
            echo "LIBS_FROM_GIT=$DEVSTACK_PROJECT_FROM_GIT"
        fi
        if [[ -n $DEVSTACK_LOCAL_CONFIG ]]; then
            echo "$DEVSTACK_LOCAL_CONFIG"
        fi
    } >"$dir/local.conf"
}

dg_tempest_tox_env() {
    if [[ -n $DEVSTACK_GATE_TEMPEST_REGEX ]]; then
        echo "all -- $DEVSTACK_GATE_TEMPEST_REGEX"
    elif [[ $DEVSTACK_GATE_TEMPEST_ALL == 1 ]]; then
        echo all
    elif [[ $DEVSTACK_GATE_TEMPEST_FULL == 1 ]]; then
        echo full
    else
        echo smoke
    fi
}
