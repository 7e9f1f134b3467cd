#!/usr/bin/env bash
# The default gate hook: write local.conf, run stack.sh (as stack where the
# job administers its host), drop stack's sudo, run exercise.sh and tempest
# when asked, and check the service logs for errors. Run by the wrap under
# its deadline, with BASE, DG_KIT, DG_ADMIN, WORKSPACE and the
# DEVSTACK_GATE_* variables exported.

set -u

# shellcheck source=functions.sh
source "$DG_KIT/functions.sh"
# shellcheck source=local-conf.sh
source "$DG_KIT/local-conf.sh"

DEVSTACK=$BASE/new/devstack

# dg_step TITLE COMMAND...: one step of the gate, timed on the console.
dg_step() {
    local title=$1 start status
    shift
    start=$(dg_now_us)
    echo "-- $title"
    "$@"
    status=$?
    if [[ $status -eq 0 ]]; then
        echo "-- $title: ok ($(dg_since "$start"))"
    else
        echo "-- $title: FAILED, exit $status ($(dg_since "$start"))"
    fi
    return $status
}

# Run a command as user $1 where the job made one, else as ourselves.
as_user() {
    local user=$1
    shift
    if [[ $DG_ADMIN != 1 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -H -u "$user" "$@"
    else
        # A root job on a host without sudo (util-linux's runuser needs none).
        runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" "$@"
    fi
}

as_stack() {
    as_user stack "$@"
}

write_local_conf() {
    if [[ -n ${KEEP_LOCALRC:-} && -f $DEVSTACK/local.conf ]]; then
        echo "KEEP_LOCALRC: using the local.conf already there"
    else
        dg_write_local_conf "$DEVSTACK"
        echo "wrote $DEVSTACK/local.conf ($(wc -l <"$DEVSTACK/local.conf") lines)"
    fi
}

run_stack() {
    if [[ $DG_ADMIN == 1 ]]; then
        dg_root chown -R stack:stack "$BASE"
    fi
    # The whole log is devstacklog.txt (LOGFILE); the console gets its end
    # when stack.sh fails.
    local start=$SECONDS status
    (cd "$DEVSTACK" && as_stack stdbuf -oL -eL bash ./stack.sh >/dev/null 2>&1)
    status=$?
    if ((SECONDS - start > 20 * 60)); then
        echo "WARNING: stack.sh took $((SECONDS - start))s: a very slow node"
    fi
    if [[ $status -ne 0 ]]; then
        echo "stack.sh exited $status; the end of devstacklog.txt:"
        tail -n 15 "$BASE/new/devstacklog.txt" 2>/dev/null | sed 's/^/  | /'
    fi
    return $status
}

drop_sudo() {
    if [[ $DG_ADMIN != 1 ]]; then
        echo "no sudo to drop: $DG_ADMIN_PROBLEM"
    elif [[ $DEVSTACK_GATE_REMOVE_STACK_SUDO == 1 ]]; then
        dg_root rm -f /etc/sudoers.d/50_stack_sh
        echo "stack's sudo removed: services must go through rootwrap now"
    else
        echo "stack keeps sudo (DEVSTACK_GATE_REMOVE_STACK_SUDO=$DEVSTACK_GATE_REMOVE_STACK_SUDO)"
    fi
}

run_exercises() {
    # exercise.sh prints its own PASS/SKIP/FAILED summary; exit 55 is a skip.
    (cd "$DEVSTACK" && as_stack env SKIP_EXERCISES="$SKIP_EXERCISES" bash ./exercise.sh)
}

run_tempest() {
    local tempest=$BASE/new/tempest words env args=()
    if [[ ! -d $tempest ]]; then
        echo "no tempest tree at $tempest"
        return 1
    fi
    read -r -a words <<<"$(dg_tempest_tox_env)"
    env=${words[0]}
    args=("${words[@]:1}")
    [[ " ${args[*]} " == *" -- "* ]] || args+=(--)
    args+=("--concurrency=$TEMPEST_CONCURRENCY")
    if [[ $DG_ADMIN == 1 ]]; then
        dg_root chown -R tempest:stack "$tempest"
    fi
    echo "tox -e $env ${args[*]}"
    (cd "$tempest" && as_user tempest tox -q -e "$env" "${args[@]}")
}

dg_step "local.conf" write_local_conf || exit 1
dg_step "stack.sh" run_stack || exit 1
dg_step "drop sudo" drop_sudo
status=0
if [[ $DEVSTACK_GATE_EXERCISES == 1 ]]; then
    dg_step "exercise.sh" run_exercises || status=1
fi
if [[ $DEVSTACK_GATE_TEMPEST == 1 ]]; then
    dg_step "tempest" run_tempest || status=1
fi
if [[ $DEVSTACK_GATE_CLEAN_LOGS == 1 ]]; then
    dg_step "clean logs" dg_check_logs || status=1
fi
exit $status
