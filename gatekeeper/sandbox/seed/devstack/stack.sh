#!/usr/bin/env bash
# Stand-in devstack's stack.sh: devstack's interface, none of OpenStack
# (see README.rst). Reads local.conf, logs to $LOGFILE, starts the enabled
# services with their logs in $SCREEN_LOGDIR.

set -o errexit -o pipefail
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
source "$TOP_DIR/functions"
load_localrc

mkdir -p "$(dirname "$LOGFILE")" "$SCREEN_LOGDIR" "$DEST/status"
START=$SECONDS
# Everything from here on goes to the log, each line timestamped, as devstack's.
exec > >(while IFS= read -r line; do printf '%(%F %T)T | %s\n' -1 "$line"; done >>"$LOGFILE") 2>&1
LOGGER=$!
# The logger writes on its own time: at exit, hand it the last lines and wait
# for them to reach $LOGFILE, so whoever runs stack.sh reads a whole log.
trap 'exec >&- 2>&-; wait "$LOGGER" 2>/dev/null' EXIT
summary() { echo "$*"; echo "$*" >>"$LOGFILE.summary"; }
die() {
    echo "[ERROR] $*"
    summary "stack.sh failed: $*"
    exit 1
}
: >"$LOGFILE.summary"

echo "stack.sh (stand-in) on $(uname -n) as $(id -un 2>/dev/null || id -u); DEST=$DEST"
echo "local.conf: $(grep -c . "$TOP_DIR/.localrc.auto" 2>/dev/null || echo 0) localrc lines"
echo "ENABLED_SERVICES=$ENABLED_SERVICES"
# devstack's service names are accepted; the stand-in runs only key and n-api.
for service in ${ENABLED_SERVICES//,/ }; do
    case $service in
        key | n-api | tempest) ;;
        n-* | g-* | c-* | q-* | s-* | h-* | ir-* | placement-* | neutron* | cinder | \
            mysql | postgresql | rabbit | zeromq | qpid | horizon | dstat | etcd3 | tls-proxy)
            echo "$service is enabled (the stand-in does not run it)"
            ;;
        *) die "unknown service $service in ENABLED_SERVICES" ;;
    esac
done

# The repositories must be there: the gate prepared them (ERROR_ON_CLONE).
for project in keystone nova; do
    if [[ ! -d $DEST/$project ]]; then
        if [[ $ERROR_ON_CLONE == True ]]; then
            die "$DEST/$project is missing and ERROR_ON_CLONE=True forbids cloning it"
        fi
        echo "would clone $project (not in the stand-in)"
    else
        echo "using $DEST/$project at $(git -C "$DEST/$project" rev-parse --short HEAD 2>/dev/null)"
    fi
done

for service in key n-api; do
    is_service_enabled "$service" || continue
    project=$(service_project "$service")
    mkdir -p "$ETC_DIR/$project"
    printf '[DEFAULT]\ndebug = True\nlog_dir = %s\n[service]\nname = %s\n' \
        "$SCREEN_LOGDIR" "$service" >"$ETC_DIR/$project/$project.conf"
    echo "configured $ETC_DIR/$project/$project.conf"
    log=$SCREEN_LOGDIR/screen-$service.log
    : >"$log"
    bash "$TOP_DIR/tools/standin-service" "$service" "$ETC_DIR/$project/$project.conf" \
        >>"$log" 2>&1 </dev/null &
    echo $! >"$DEST/status/$service.pid"
    echo "started $service (pid $!), logging to $log"
    if [[ $service == n-api && ${STANDIN_HANG:-False} == True ]]; then
        echo "waiting for n-api to answer (STANDIN_HANG: it never will)"
        while :; do sleep 1; done
    fi
    for _ in $(seq 100); do
        grep -q "started" "$log" && break
        sleep 0.1
    done
    if ! grep -q "started" "$log"; then
        echo "$service did not start" >"$DEST/status/$service.failure"
        die "$service did not start"
    fi
done

if is_service_enabled tempest; then
    if [[ ! -d $DEST/tempest ]]; then
        cp -r "$TOP_DIR/tempest" "$DEST/tempest"
        echo "installed the stand-in tempest at $DEST/tempest"
    fi
    mkdir -p "$DEST/tempest/etc"
    {
        echo "[DEFAULT]"
        echo "log_file = tempest.log"
        echo "[service_available]"
        echo "nova = $(is_service_enabled n-api && echo True || echo False)"
        echo "keystone = $(is_service_enabled key && echo True || echo False)"
        echo "[stand_in]"
        echo "status_dir = $DEST/status"
    } >"$DEST/tempest/etc/tempest.conf"
    echo "configured $DEST/tempest/etc/tempest.conf"
fi

touch "$TOP_DIR/.stack-ran"
summary "stack.sh completed in $((SECONDS - START)) seconds."
