# shellcheck shell=bash
# local-conf.sh: devstack-gate's DEVSTACK_GATE_* switches, turned into
# devstack's local.conf. Sourced (never run) by devstack-vm-gate-wrap.sh and
# by reproduce.sh, so the wrap, the logs and a developer's re-run all see
# the same values. Plain bash, safe under `set -u`. It defines:
#
#   dg_export_defaults          export every supported DEVSTACK_GATE_* with
#                               devstack-gate's default when it is unset
#   dg_write_local_conf DIR     write DIR/local.conf from those variables
#   dg_tempest_tox_env          print the tox environment tempest runs in
#   dg_enabled_services         print ENABLED_SERVICES for the switches
#
# Names and defaults are devstack-gate's, so old job definitions keep
# working. Where its 2014 and 2016 defaults differ, the 2016 one is used
# (the later jobs set the older value explicitly when they needed it).

# --- defaults -----------------------------------------------------------------

# _dg_default NAME VALUE: export NAME, set to VALUE when it is unset or
# empty (devstack-gate's ${NAME:-VALUE}: a job that sets a switch to ""
# gets the default, as it always did).
_dg_default() {
    if [ -z "${!1:-}" ]; then
        printf -v "$1" '%s' "$2"
    fi
    export "${1?}"
}

# _dg_fail MESSAGE: say what is wrong and stop the caller. Returned rather
# than exited, so a sourcing shell decides what a bad switch costs.
_dg_fail() {
    echo "local-conf.sh: ERROR: $*" >&2
    return 1
}

# _dg_flag NAME: refuse a switch that is not 0 or 1 (a typo such as
# DEVSTACK_GATE_NEUTRON=yes must not quietly mean "off").
_dg_flag() {
    case "${!1}" in
        0 | 1) return 0 ;;
        *) _dg_fail "$1 must be 0 or 1, not '${!1}'" ;;
    esac
}

# _dg_one_of NAME WORD...: refuse a value that is not one of the WORDs.
_dg_one_of() {
    local name=$1 word
    shift
    for word in "$@"; do
        [ "${!name}" = "$word" ] && return 0
    done
    _dg_fail "$name must be one of: $*; not '${!name}'"
}

# The switches that are 0 or 1.
_DG_FLAGS=(
    DEVSTACK_GATE_TEMPEST
    DEVSTACK_GATE_TEMPEST_FULL
    DEVSTACK_GATE_TEMPEST_ALL
    DEVSTACK_GATE_TEMPEST_ALL_PLUGINS
    DEVSTACK_GATE_TEMPEST_NOTESTS
    DEVSTACK_GATE_TEMPEST_TESTR_FULL
    DEVSTACK_GATE_TEMPEST_STRESS
    DEVSTACK_GATE_TEMPEST_HEAT_SLOW
    DEVSTACK_GATE_TEMPEST_LARGE_OPS
    DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION
    DEVSTACK_GATE_SMOKE_SERIAL
    DEVSTACK_GATE_EXERCISES
    DEVSTACK_GATE_NEUTRON
    DEVSTACK_GATE_NEUTRON_DVR
    DEVSTACK_GATE_POSTGRES
    DEVSTACK_GATE_ZEROMQ
    DEVSTACK_GATE_CELLS
    DEVSTACK_GATE_IRONIC
    DEVSTACK_GATE_CEPH
    DEVSTACK_GATE_TROVE
    DEVSTACK_GATE_SAHARA
    DEVSTACK_GATE_MARCONI
    DEVSTACK_GATE_CLEAN_LOGS
    DEVSTACK_GATE_CONFIGDRIVE
    DEVSTACK_GATE_REMOVE_STACK_SUDO
    DEVSTACK_GATE_UNSTACK
    DEVSTACK_GATE_INSTALL_TESTONLY
    DEVSTACK_GATE_USE_PYTHON3
    DEVSTACK_GATE_TLSPROXY
)

# dg_export_defaults: export every supported variable, with devstack-gate's
# default where the job left it unset, and check the values. Fails (status
# 1, the reason on stderr) on a value devstack-gate would not have known.
dg_export_defaults() {
    local flag
    # On unless a job says otherwise; every other switch is off.
    _dg_default DEVSTACK_GATE_CLEAN_LOGS 1
    _dg_default DEVSTACK_GATE_REMOVE_STACK_SUDO 1
    for flag in "${_DG_FLAGS[@]}"; do
        _dg_default "$flag" 0
    done

    _dg_default DEVSTACK_GATE_TEMPEST_REGEX ""
    _dg_default DEVSTACK_GATE_GRENADE ""
    _dg_default DEVSTACK_GATE_MQ_DRIVER rabbitmq
    _dg_default DEVSTACK_GATE_VIRT_DRIVER libvirt
    _dg_default DEVSTACK_GATE_LIBVIRT_TYPE qemu
    _dg_default DEVSTACK_GATE_IRONIC_DRIVER pxe_ssh
    _dg_default DEVSTACK_GATE_TOPOLOGY aio
    _dg_default DEVSTACK_GATE_PROJECTS_OVERRIDE ""
    _dg_default DEVSTACK_GATE_SETTINGS ""
    _dg_default DEVSTACK_GATE_NETCONSOLE ""
    _dg_default DEVSTACK_LOCAL_CONFIG ""
    _dg_default DEVSTACK_SUBNODE_CONFIG ""
    _dg_default DEVSTACK_PROJECT_FROM_GIT ""
    _dg_default ENABLED_SERVICES ""
    _dg_default BASE /opt/stack

    # The gate hook's budget in minutes: the build's timeout (BUILD_TIMEOUT,
    # in milliseconds as Jenkins gave it) less a buffer for collecting logs
    # (at most a quarter of the build, so a short build keeps most of its
    # time); 60 minutes when the build says nothing.
    _dg_default DEVSTACK_GATE_TIMEOUT_BUFFER 10
    case "$DEVSTACK_GATE_TIMEOUT_BUFFER" in
        '' | *[!0-9]*) _dg_fail "DEVSTACK_GATE_TIMEOUT_BUFFER must be whole minutes, not '$DEVSTACK_GATE_TIMEOUT_BUFFER'" || return ;;
    esac
    if [ -z "${DEVSTACK_GATE_TIMEOUT:-}" ] && [ -n "${BUILD_TIMEOUT:-}" ]; then
        case "$BUILD_TIMEOUT" in
            '' | *[!0-9]*) _dg_fail "BUILD_TIMEOUT must be milliseconds, not '$BUILD_TIMEOUT'" || return ;;
        esac
        local minutes=$((BUILD_TIMEOUT / 60000)) buffer=$DEVSTACK_GATE_TIMEOUT_BUFFER
        [ "$buffer" -gt $((minutes / 4)) ] && buffer=$((minutes / 4))
        DEVSTACK_GATE_TIMEOUT=$((minutes - buffer))
        [ "$DEVSTACK_GATE_TIMEOUT" -ge 1 ] || DEVSTACK_GATE_TIMEOUT=1
    fi
    _dg_default DEVSTACK_GATE_TIMEOUT 60
    case "$DEVSTACK_GATE_TIMEOUT" in
        '' | *[!0-9]*) _dg_fail "DEVSTACK_GATE_TIMEOUT must be whole minutes, not '$DEVSTACK_GATE_TIMEOUT'" || return ;;
    esac

    # Tempest's workers: one per CPU, halved on bigger nodes (the services
    # under test need CPU too).
    if [ -z "${TEMPEST_CONCURRENCY:-}" ]; then
        TEMPEST_CONCURRENCY=$(nproc 2>/dev/null || echo 1)
        if [ "$TEMPEST_CONCURRENCY" -gt 3 ]; then
            TEMPEST_CONCURRENCY=$((TEMPEST_CONCURRENCY / 2))
        fi
    fi
    export TEMPEST_CONCURRENCY

    # The old spelling of the message bus choice.
    if [ "$DEVSTACK_GATE_ZEROMQ" = 1 ]; then
        DEVSTACK_GATE_MQ_DRIVER=zeromq
    fi
    # Grenade always runs tempest (its smoke tests on both sides).
    if [ -n "$DEVSTACK_GATE_GRENADE" ] && [ "$DEVSTACK_GATE_GRENADE" != 0 ]; then
        DEVSTACK_GATE_TEMPEST=1
    fi

    for flag in "${_DG_FLAGS[@]}"; do
        _dg_flag "$flag" || return
    done
    _dg_one_of DEVSTACK_GATE_MQ_DRIVER rabbitmq zeromq qpid || return
    _dg_one_of DEVSTACK_GATE_VIRT_DRIVER libvirt fake ironic xenapi openvz || return
    _dg_one_of DEVSTACK_GATE_TOPOLOGY aio multinode || return
}

# --- services -------------------------------------------------------------------

# dg_enabled_services: the comma-separated service list the switches make:
# a base set, then each feature adds and removes services (the feature grid
# devstack-gate kept in features.yaml), then ENABLED_SERVICES from the job.
dg_enabled_services() {
    local -a services=(
        mysql rabbit dstat
        key
        g-api g-reg
        n-api n-cauth n-cond n-cpu n-crt n-net n-obj n-sch n-novnc
        c-api c-bak c-sch c-vol cinder
        s-proxy s-account s-container s-object
        horizon
    )
    local -a remove=()
    if [ "$DEVSTACK_GATE_NEUTRON" = 1 ]; then
        services+=(q-svc q-agt q-dhcp q-l3 q-meta q-metering)
        remove+=(n-net)
    fi
    if [ "$DEVSTACK_GATE_POSTGRES" = 1 ]; then
        services+=(postgresql)
        remove+=(mysql)
    fi
    case "$DEVSTACK_GATE_MQ_DRIVER" in
        zeromq)
            services+=(zeromq)
            remove+=(rabbit)
            ;;
        qpid)
            services+=(qpid)
            remove+=(rabbit)
            ;;
    esac
    if [ "$DEVSTACK_GATE_CELLS" = 1 ]; then
        services+=(n-cell)
        # Cells v1 had no cinder or neutron support in the gate.
        remove+=(c-api c-bak c-sch c-vol cinder)
    fi
    if [ "$DEVSTACK_GATE_IRONIC" = 1 ] || [ "$DEVSTACK_GATE_VIRT_DRIVER" = ironic ]; then
        services+=(ir-api ir-cond)
        # Bare metal boots from images, not volumes or objects.
        remove+=(c-api c-bak c-sch c-vol cinder s-proxy s-account s-container s-object)
    fi
    if [ "$DEVSTACK_GATE_CEPH" = 1 ]; then
        services+=(ceph)
    fi
    if [ "$DEVSTACK_GATE_TROVE" = 1 ]; then
        services+=(trove tr-api tr-tmgr tr-cond)
    fi
    if [ "$DEVSTACK_GATE_SAHARA" = 1 ]; then
        services+=(sahara)
    fi
    if [ "$DEVSTACK_GATE_MARCONI" = 1 ]; then
        services+=(zaqar-server)
    fi
    if [ "$DEVSTACK_GATE_TEMPEST" = 1 ]; then
        services+=(tempest)
    fi
    if [ "$DEVSTACK_GATE_TLSPROXY" = 1 ]; then
        services+=(tls-proxy)
    fi
    local extra
    IFS=, read -r -a extra <<<"$ENABLED_SERVICES"
    services+=("${extra[@]}")

    local -a kept=()
    local service gone seen
    for service in "${services[@]}"; do
        [ -n "$service" ] || continue
        for gone in "${remove[@]}"; do
            [ "$service" = "$gone" ] && continue 2
        done
        for seen in "${kept[@]}"; do
            [ "$service" = "$seen" ] && continue 2
        done
        kept+=("$service")
    done
    local IFS=,
    echo "${kept[*]}"
}

# --- local.conf -------------------------------------------------------------------

# dg_localrc: the [[local|localrc]] lines (without the header) for the
# switches, on stdout. DEVSTACK_LOCAL_CONFIG is not included: it goes last.
dg_localrc() {
    local dest=$BASE/new
    cat <<EOF
# Written by gatekeeper's devstack kit (local-conf.sh) from the job's
# DEVSTACK_GATE_* variables; DEVSTACK_LOCAL_CONFIG, if any, comes last.
DEST=$dest
DATA_DIR=$BASE/data
ACTIVE_TIMEOUT=90
BOOT_TIMEOUT=90
ASSOCIATE_TIMEOUT=60
TERMINATE_TIMEOUT=60
ADMIN_PASSWORD=secretadmin
DATABASE_PASSWORD=secretdatabase
RABBIT_PASSWORD=secretrabbit
SERVICE_PASSWORD=secretservice
SERVICE_TOKEN=111222333444
SWIFT_HASH=1234123412341234
ROOTSLEEP=0
# Devstack must use the repositories the gate prepared, never clone its own.
ERROR_ON_CLONE=True
SERVICE_HOST=127.0.0.1
SYSLOG=False
SCREEN_LOGDIR=$dest/screen-logs
LOGFILE=$dest/devstacklog.txt
LOGDIR=$dest/logs
VERBOSE=True
LOG_COLOR=False
USE_SCREEN=False
FIXED_RANGE=10.1.0.0/20
FIXED_NETWORK_SIZE=4096
SWIFT_REPLICAS=1
PIP_USE_MIRRORS=False
UNDO_REQUIREMENTS=False
CINDER_PERIODIC_INTERVAL=10
export OS_NO_CACHE=True
EOF
    echo "ENABLED_SERVICES=$(dg_enabled_services)"

    # Only one driver runs at a time; large-ops runs on the fake one.
    local virt=$DEVSTACK_GATE_VIRT_DRIVER
    [ "$DEVSTACK_GATE_TEMPEST_LARGE_OPS" = 1 ] && virt=fake
    [ "$DEVSTACK_GATE_IRONIC" = 1 ] && virt=ironic
    echo "VIRT_DRIVER=$virt"
    case "$virt" in
        libvirt)
            echo "LIBVIRT_TYPE=$DEVSTACK_GATE_LIBVIRT_TYPE"
            ;;
        ironic)
            echo "IRONIC_DEPLOY_DRIVER=$DEVSTACK_GATE_IRONIC_DRIVER"
            echo "IRONIC_VM_COUNT=3"
            echo "IRONIC_VM_SPECS_RAM=512"
            echo "IRONIC_BAREMETAL_BASIC_OPS=True"
            echo "DEFAULT_INSTANCE_TYPE=baremetal"
            echo "BUILD_TIMEOUT=600"
            ;;
        xenapi)
            echo "XENAPI_PASSWORD=${XENAPI_PASSWORD:-secretxen}"
            echo "XENAPI_CONNECTION_URL=${XENAPI_CONNECTION_URL:-http://169.254.0.1}"
            ;;
        openvz)
            echo "IMAGE_URLS=${OPENVZ_IMAGE_URL:-http://download.openvz.org/template/precreated/ubuntu-12.04-x86_64.tar.gz}"
            ;;
        fake)
            # Many fake compute nodes, so large-ops can boot hundreds of servers.
            echo "NUMBER_FAKE_NOVA_COMPUTE=${NUMBER_FAKE_NOVA_COMPUTE:-50}"
            ;;
    esac

    if [ "$DEVSTACK_GATE_TEMPEST" = 1 ]; then
        echo "API_RATE_LIMIT=False"
        echo "VOLUME_BACKING_FILE_SIZE=24G"
    fi
    if [ "$DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION" = 1 ]; then
        echo "TEMPEST_ALLOW_TENANT_ISOLATION=False"
    fi
    if [ "$DEVSTACK_GATE_NEUTRON" = 1 ]; then
        echo "Q_USE_DEBUG_COMMAND=True"
        echo "NETWORK_GATEWAY=10.1.0.1"
        if [ "$DEVSTACK_GATE_NEUTRON_DVR" = 1 ]; then
            echo "Q_DVR_MODE=dvr_snat"
        fi
    fi
    if [ "$DEVSTACK_GATE_POSTGRES" = 1 ]; then
        echo "DATABASE_TYPE=postgresql"
    fi
    if [ "$DEVSTACK_GATE_CEPH" = 1 ]; then
        echo "CINDER_ENABLED_BACKENDS=ceph:ceph"
        echo "GLANCE_STORE=rbd"
        echo "REMOTE_CEPH=False"
    fi
    if [ "$DEVSTACK_GATE_CONFIGDRIVE" = 1 ]; then
        echo "FORCE_CONFIG_DRIVE=always"
    else
        echo "FORCE_CONFIG_DRIVE=False"
    fi
    if [ "$DEVSTACK_GATE_EXERCISES" = 1 ]; then
        # The exercises the gate never ran (they needed what a node lacks).
        echo "SKIP_EXERCISES=${SKIP_EXERCISES:-boot_from_volume,bundle,client-env,euca}"
    fi
    if [ "$DEVSTACK_GATE_INSTALL_TESTONLY" = 1 ]; then
        echo "INSTALL_TESTONLY_PACKAGES=True"
    fi
    if [ "$DEVSTACK_GATE_USE_PYTHON3" = 1 ]; then
        echo "USE_PYTHON3=True"
    fi
    if [ "$DEVSTACK_GATE_TOPOLOGY" = multinode ]; then
        # Every node points at the primary, which runs the control plane.
        local primary=${PRIMARY_NODE_IP:-127.0.0.1}
        echo "MULTI_HOST=True"
        echo "SERVICE_HOST=$primary"
        echo "DATABASE_HOST=$primary"
        echo "RABBIT_HOST=$primary"
        echo "GLANCE_HOSTPORT=$primary:9292"
    fi
    if [ -n "$DEVSTACK_PROJECT_FROM_GIT" ]; then
        # Libraries installed from the prepared trees instead of releases.
        echo "LIBS_FROM_GIT=$DEVSTACK_PROJECT_FROM_GIT"
    fi
    if [ -n "$DEVSTACK_GATE_NETCONSOLE" ]; then
        echo "# kernel console sent to $DEVSTACK_GATE_NETCONSOLE over UDP (set up on the host)"
    fi
}

# dg_post_config: the sections after localrc, on stdout (none by default).
dg_post_config() {
    if [ "$DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION" = 1 ]; then
        cat <<'EOF'

[[test-config|$TEMPEST_CONFIG]]
[auth]
use_dynamic_credentials = False
EOF
    fi
    if [ "$DEVSTACK_GATE_NEUTRON" = 1 ] && [ "$DEVSTACK_GATE_NEUTRON_DVR" = 1 ]; then
        cat <<'EOF'

[[post-config|$NEUTRON_CONF]]
[DEFAULT]
router_distributed = True
EOF
    fi
}

# dg_write_local_conf DEVSTACK_DIR: write DEVSTACK_DIR/local.conf. Runs
# dg_export_defaults first, so a caller that forgot gets the same file.
# DEVSTACK_LOCAL_CONFIG goes at the end of the localrc section, verbatim,
# so its settings win and its own [[...]] sections (if any) stay whole.
dg_write_local_conf() {
    local dir=${1:-}
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        _dg_fail "dg_write_local_conf needs the devstack directory; '$dir' is not one"
        return
    fi
    dg_export_defaults || return
    local body
    body=$(dg_localrc) || return
    {
        echo "[[local|localrc]]"
        printf '%s\n' "$body"
        if [ -n "$DEVSTACK_LOCAL_CONFIG" ]; then
            echo "# DEVSTACK_LOCAL_CONFIG, as the job gave it:"
            printf '%s\n' "$DEVSTACK_LOCAL_CONFIG"
        fi
        dg_post_config
    } >"$dir/local.conf.tmp" && mv "$dir/local.conf.tmp" "$dir/local.conf"
}

# --- tempest ------------------------------------------------------------------------

# dg_tempest_tox_env: the tox environment tempest runs in, chosen by the
# first flag set (in devstack-gate's order), then, with a regex, `-- REGEX`
# (what follows the env on tox's command line: `tox -e all -- REGEX`).
# Prints nothing when no tests run (DEVSTACK_GATE_TEMPEST=0, or NOTESTS:
# tempest is configured, and the wrap runs no tox).
dg_tempest_tox_env() {
    dg_export_defaults || return
    if [ "$DEVSTACK_GATE_TEMPEST" != 1 ] || [ "$DEVSTACK_GATE_TEMPEST_NOTESTS" = 1 ]; then
        return 0
    fi
    if [ -n "$DEVSTACK_GATE_TEMPEST_REGEX" ] || [ "$DEVSTACK_GATE_TEMPEST_ALL_PLUGINS" = 1 ]; then
        local env=all
        [ "$DEVSTACK_GATE_TEMPEST_ALL_PLUGINS" = 1 ] && env=all-plugin
        if [ -n "$DEVSTACK_GATE_TEMPEST_REGEX" ]; then
            echo "$env -- $DEVSTACK_GATE_TEMPEST_REGEX"
        else
            echo "$env"
        fi
    elif [ "$DEVSTACK_GATE_TEMPEST_ALL" = 1 ]; then
        echo all
    elif [ "$DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION" = 1 ]; then
        echo full-serial
    elif [ "$DEVSTACK_GATE_TEMPEST_FULL" = 1 ]; then
        echo full
    elif [ "$DEVSTACK_GATE_TEMPEST_TESTR_FULL" = 1 ]; then
        echo testr-full
    elif [ "$DEVSTACK_GATE_TEMPEST_STRESS" = 1 ]; then
        echo stress
    elif [ "$DEVSTACK_GATE_TEMPEST_HEAT_SLOW" = 1 ]; then
        echo heat-slow
    elif [ "$DEVSTACK_GATE_TEMPEST_LARGE_OPS" = 1 ]; then
        echo large-ops
    elif [ "$DEVSTACK_GATE_SMOKE_SERIAL" = 1 ]; then
        echo smoke-serial
    else
        echo smoke
    fi
}
