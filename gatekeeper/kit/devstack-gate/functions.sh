#!/usr/bin/env bash
# Shared helpers of the devstack job kit: phases, the host, the workspace,
# reproduce.sh, the hooks and cleanup. Sourced by devstack-vm-gate-wrap.sh
# and devstack-vm-gate.sh; defines functions and nothing else.
#
# Variables the wrap sets before using these: WORKSPACE (the build's
# directory: logs/ and the prepared projects), BASE (where devstack's tree
# lives: $BASE/new/<short name>), DG_KIT (this directory), DG_ADMIN (1 when
# the job may administer its host), DG_STATE (the kit's scratch directory).

# -- time and phases ---------------------------------------------------------

# Microseconds since the epoch (bash 5's EPOCHREALTIME, without the dot).
dg_now_us() {
    local t=${EPOCHREALTIME/./}
    echo "${t/,/}"
}

# "0.3s" from a start in microseconds.
dg_since() {
    local elapsed=$(($(dg_now_us) - $1))
    printf '%d.%02ds' $((elapsed / 1000000)) $((elapsed % 1000000 / 10000))
}

# Copy stdin to stdout and, each line prefixed "YYYY-MM-DD HH:MM:SS.mmm | ",
# to the file $1 (devstack-gate's tsfilter).
dg_tee_ts() {
    local file=$1 line us
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s\n' "$line"
        us=$(dg_now_us)
        printf '%(%F %T)T.%03d | %s\n' $((us / 1000000)) $((us % 1000000 / 1000)) "$line" >>"$file"
    done
}

# dg_phase NAME TITLE COMMAND...: run COMMAND as one phase of the job, its
# output on the console and in logs/devstack-gate-NAME.txt, between a header
# and a footer that says how it ended and how long it took. Returns its status.
# COMMAND runs in this shell, as devstack-gate's hooks did: what a
# pre_test_hook exports (DEVSTACK_LOCAL_CONFIG, ...) reaches the gate hook.
dg_phase() {
    local name=$1 title=$2 start status copied waits=0
    shift 2
    start=$(dg_now_us)
    copied=$DG_STATE/copied-$name
    rm -f "$copied"
    echo "== $title"
    set +e
    "$@" > >(dg_tee_ts "$WORKSPACE/logs/devstack-gate-$name.txt"; : >"$copied") 2>&1
    status=$?
    # The copy to the console and the log ends before the footer, unless
    # something the phase left running still holds its output (5 s at most).
    while [[ ! -e $copied ]] && ((waits++ < 100)); do
        sleep 0.05
    done
    if [[ $status -eq 0 ]]; then
        echo "== $title: done ($(dg_since "$start"))"
    else
        echo "== $title: FAILED, exit $status ($(dg_since "$start"))"
    fi
    return "$status"
}

# -- the host ----------------------------------------------------------------

# Why this job may not administer its host ("" when it may): it needs root
# or passwordless sudo, and a host that is its own (DEVSTACK_GATE_SETUP_HOST=0
# says it is not, e.g. a static node that is someone's machine).
dg_admin_problem() {
    if [[ ${DEVSTACK_GATE_SETUP_HOST:-1} == 0 ]]; then
        echo "DEVSTACK_GATE_SETUP_HOST=0: this host is not the job's to change"
    elif [[ $(id -u) -eq 0 ]]; then
        echo ""
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo ""
    else
        echo "the job runs as uid $(id -u) without passwordless sudo (a confined or unprivileged node)"
    fi
}

# Run a command as root: directly when we are root, else through sudo.
dg_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

dg_setup_host() {
    echo "host: $(uname -n), $(nproc) cpus, kernel $(uname -r), as $(id -un 2>/dev/null || id -u)"
    if [[ $DG_ADMIN != 1 ]]; then
        echo "skipped: hosts file, syslog marker, stack user with sudo, restricted tempest user"
        echo "because $DG_ADMIN_PROBLEM"
        return 0
    fi
    local host
    host=$(uname -n)
    # devstack resolves its own hostname; a cloud image may not list it.
    if ! grep -qw -- "$host" /etc/hosts; then
        echo "127.0.1.1 $host" | dg_root tee -a /etc/hosts >/dev/null
        echo "hosts: added $host"
    fi
    # A fresh marker: cleanup keeps only what syslog got after it.
    date -u '+%F %T' >"$DG_STATE/syslog-since"
    logger -t devstack-gate "devstack-gate: build ${ZUUL_UUID:-} starts" 2>/dev/null || true
    echo "syslog: marker at $(cat "$DG_STATE/syslog-since")"
    if ! id stack >/dev/null 2>&1; then
        dg_root useradd -U -s /bin/bash -d "$BASE/new" -m stack
    fi
    dg_root mkdir -p /etc/sudoers.d
    echo "stack ALL=(root) NOPASSWD:ALL" | dg_root tee /etc/sudoers.d/50_stack_sh >/dev/null
    dg_root chmod 0440 /etc/sudoers.d/50_stack_sh
    echo "users: stack with sudo"
    if ! id tempest >/dev/null 2>&1; then
        dg_root useradd -U -s /bin/bash -m tempest
    fi
    # Tempest may touch the network and nothing else as root.
    echo "tempest ALL=(root) NOPASSWD:/sbin/ip, NOPASSWD:/sbin/iptables, NOPASSWD:/usr/bin/ovsdb-client" |
        dg_root tee /etc/sudoers.d/51_tempest_sh >/dev/null
    dg_root chmod 0440 /etc/sudoers.d/51_tempest_sh
    echo "users: tempest, restricted to ip, iptables and ovsdb-client"
}

# -- the workspace -----------------------------------------------------------

# The projects to prepare: DEVSTACK_GATE_PROJECTS_OVERRIDE, or every project
# the worker put in the workspace, plus the project under test.
dg_projects() {
    if [[ -n ${DEVSTACK_GATE_PROJECTS_OVERRIDE:-} ]]; then
        echo "$DEVSTACK_GATE_PROJECTS_OVERRIDE"
        return
    fi
    local found=() git
    for git in "$WORKSPACE"/*/*/.git; do
        [[ -e $git ]] || continue
        git=${git%/.git}
        found+=("${git#"$WORKSPACE"/}")
    done
    if [[ -n ${ZUUL_PROJECT:-} && " ${found[*]} " != *" $ZUUL_PROJECT "* ]]; then
        found+=("$ZUUL_PROJECT")
    fi
    echo "${found[*]}"
}

# The branch a project is tested on: OVERRIDE_<SHORT>_PROJECT_BRANCH (the
# short name upper-cased, "-" and "." as "_"), else OVERRIDE_ZUUL_BRANCH,
# else ZUUL_BRANCH, else master.
dg_project_branch() {
    local short=${1##*/} var
    short=${short^^}
    short=${short//[-.]/_}
    var="OVERRIDE_${short}_PROJECT_BRANCH"
    echo "${!var:-${OVERRIDE_ZUUL_BRANCH:-${ZUUL_BRANCH:-master}}}"
}

# Where a project's tested state comes from: the worker's prepared copy in
# the workspace (already at the merger's state), or ZUUL_URL.
dg_project_source() {
    if [[ -d $WORKSPACE/$1/.git ]]; then
        echo "$WORKSPACE/$1"
    elif [[ -n ${ZUUL_URL:-} ]]; then
        echo "${ZUUL_URL%/}/$1"
    fi
}

dg_git() {
    git -c advice.detachedHead=false "$@"
}

# Put $BASE/new/<short> at the tested state of project $1; say where from.
dg_setup_project() {
    local project=$1 short=${1##*/} dest source branch cache
    dest=$BASE/new/$short
    source=$(dg_project_source "$project")
    branch=$(dg_project_branch "$project")
    cache=${GATEKEEPER_GIT_CACHE:-/opt/git}/$project
    rm -rf "$dest"
    if [[ -d $cache/.git || -f $cache/HEAD ]]; then
        dg_git clone -q --no-checkout "$cache" "$dest"
        echo "$project: seeded from the image cache $cache"
    elif [[ -n $source ]]; then
        if ! dg_git clone -q --no-checkout "$source" "$dest"; then
            echo "$project: ERROR: cannot clone $source" >&2
            return 1
        fi
        echo "$project: cloned from $source (no image cache)"
    else
        echo "$project: ERROR: no image cache, no workspace copy and no ZUUL_URL" >&2
        return 1
    fi
    [[ -n $source ]] || source=$cache
    local want=${ZUUL_BRANCH:-master} how=""
    if [[ $branch == "$want" && $source == "$WORKSPACE/$project" ]]; then
        # The worker's copy is the merger's state for ZUUL_REF.
        dg_git -C "$dest" fetch -q "$source" HEAD && how="the merger's state of ${ZUUL_REF:-$branch}"
    elif [[ $branch == "$want" && -n ${ZUUL_REF:-} ]]; then
        dg_git -C "$dest" fetch -q "$source" "$ZUUL_REF" 2>/dev/null && how="$ZUUL_REF"
    fi
    if [[ -z $how ]]; then
        local candidate
        for candidate in "$branch" master; do
            if dg_git -C "$dest" fetch -q "$source" "refs/heads/$candidate" 2>/dev/null ||
                dg_git -C "$dest" fetch -q "$source" "refs/remotes/origin/$candidate" 2>/dev/null; then
                how="the tip of $candidate"
                branch=$candidate
                break
            fi
        done
    fi
    if [[ -z $how ]]; then
        echo "$project: ERROR: neither ${ZUUL_REF:-a ref}, $branch nor master in $source" >&2
        return 1
    fi
    dg_git -C "$dest" checkout -q -B "$branch" FETCH_HEAD
    dg_git -C "$dest" reset -q --hard
    dg_git -C "$dest" clean -q -x -f -d
    echo "$project: $branch at $(dg_git -C "$dest" rev-parse HEAD) ($how)"
}

dg_setup_workspace() {
    mkdir -p "$BASE/new"
    local project failed=0
    for project in $(dg_projects); do
        dg_setup_project "$project" || failed=1
    done
    return $failed
}

# -- reproduce.sh ------------------------------------------------------------

# logs/reproduce.sh: run the same job on a fresh machine. The kit travels
# inside it (a base64 tarball), so it is the exact kit this build ran, and
# needs no server to fetch it from.
dg_write_reproduce() {
    local out=$WORKSPACE/logs/reproduce.sh name project
    {
        cat <<'HEADER'
#!/usr/bin/env bash
# Re-run this devstack job on a fresh machine.
#
# Prerequisites: a fresh, current Debian or Ubuntu machine (a throw-away VM:
# the job creates users and changes the host when run as root), with bash,
# git, python3, tox, python3-os-testr (subunit2html), base64 and tar.
# The projects are fetched from ZUUL_URL at ZUUL_REF (falling back to the
# branch, then master): export REPRODUCE_ZUUL_URL to fetch from elsewhere
# (a mirror, a local directory of repositories).
#
#   bash reproduce.sh [DIRECTORY]    (default: ./workspace/$ZUUL_JOB)
set -eu
HEADER
        echo
        echo "# The build's DEVSTACK_GATE_* and ZUUL_* values."
        for name in $(compgen -e | sort); do
            case $name in
                # Derived from BUILD_TIMEOUT unless the job set it (below).
                DEVSTACK_GATE_TIMEOUT) ;;
                DEVSTACK* | ZUUL* | OVERRIDE_*_BRANCH | BUILD_TIMEOUT | TEMPEST_CONCURRENCY | \
                    ENABLED_SERVICES | SKIP_EXERCISES | KEEP_LOCALRC)
                    printf 'declare -x %s=%q\n' "$name" "${!name}"
                    ;;
            esac
        done
        if [[ -n ${DG_USER_TIMEOUT:-} ]]; then
            printf 'declare -x DEVSTACK_GATE_TIMEOUT=%q\n' "$DG_USER_TIMEOUT"
        fi
        echo 'ZUUL_URL=${REPRODUCE_ZUUL_URL:-$ZUUL_URL}'
        echo 'export ZUUL_URL'
        printf 'declare -x DEVSTACK_GATE_PROJECTS_OVERRIDE=%q\n' "$(dg_projects)"
        echo
        echo "# The commit each project was tested at (the wrap warns on a difference)."
        printf 'declare -x DG_REPRODUCE_COMMITS=%q\n' "$(dg_tested_commits)"
        echo
        echo "# The hooks this build ran with."
        for name in pre_test_hook gate_hook post_test_hook; do
            if declare -F "$name" >/dev/null; then
                declare -f "$name"
                echo "export -f $name"
            fi
        done
        cat <<'BOOTSTRAP'

# Bootstrap: unpack the kit, make the workspace, run the wrap.
WORKSPACE=$(realpath -m "${1:-workspace/$ZUUL_JOB}")
export WORKSPACE
mkdir -p "$WORKSPACE/.gatekeeper"
rm -rf "$WORKSPACE/.gatekeeper/kit"
mkdir -p "$WORKSPACE/.gatekeeper/kit"
sed -n '/^__KIT_BELOW__$/,$p' "$0" | tail -n +2 | base64 -d | tar -xzf - -C "$WORKSPACE/.gatekeeper/kit"
cd "$WORKSPACE"
exec bash "$WORKSPACE/.gatekeeper/kit/devstack-gate/devstack-vm-gate-wrap.sh"
__KIT_BELOW__
BOOTSTRAP
        tar -czf - -C "$(dirname "$DG_KIT")" "$(basename "$DG_KIT")" | base64
    } >"$out"
    chmod +x "$out"
    echo "wrote logs/reproduce.sh ($(wc -c <"$out") bytes)"
}

# "project=sha ..." for every prepared project.
dg_tested_commits() {
    local project out=()
    for project in $(dg_projects); do
        if [[ -d $BASE/new/${project##*/}/.git ]]; then
            out+=("$project=$(git -C "$BASE/new/${project##*/}" rev-parse HEAD)")
        fi
    done
    echo "${out[*]}"
}

# On a reproduction, say whether each project is at the commit the build had.
dg_compare_commits() {
    local pair project sha now
    for pair in ${DG_REPRODUCE_COMMITS:-}; do
        project=${pair%%=*}
        sha=${pair#*=}
        now=$(git -C "$BASE/new/${project##*/}" rev-parse HEAD 2>/dev/null || echo none)
        if [[ $now == "$sha" ]]; then
            echo "$project: same commit as the build ($sha)"
        else
            echo "$project: WARNING: at $now, the build tested $sha"
        fi
    done
}

# -- hooks -------------------------------------------------------------------

# Run hook $1: an exported bash function of that name (devstack-gate's way),
# else the project under test's $DEVSTACK_GATE_HOOKS_DIR/$1.sh (default
# contrib/ci/) from its prepared tree, sourced as the jobs' functions
# sourced them; both in $WORKSPACE, in the wrap's shell, as devstack-gate
# ran them. Without either, the gate hook is the kit's devstack-vm-gate.sh
# and the others do nothing (and say so).
dg_run_hook() {
    local hook=$1 file
    file=$BASE/new/${ZUUL_PROJECT##*/}/${DEVSTACK_GATE_HOOKS_DIR:-contrib/ci}/$hook.sh
    if declare -F "$hook" >/dev/null; then
        echo "$hook: the job's function"
        cd "$WORKSPACE" && "$hook"
    elif [[ -n ${ZUUL_PROJECT:-} && -f $file ]]; then
        echo "$hook: ${file#"$BASE"/new/}"
        cd "$WORKSPACE" || return 1
        # A project's hook was written for devstack-gate's shell, without -u.
        set +u
        source "$file"
        local status=$?
        set -u
        return $status
    elif [[ $hook == gate_hook ]]; then
        echo "gate_hook: the kit's devstack-vm-gate.sh"
        bash "$DG_KIT/devstack-vm-gate.sh"
    else
        echo "$hook: none"
    fi
}

# Run command... in a process group of its own, killed with its whole group
# (SIGKILL) after $1 seconds. Returns its status, or 137 and leaves
# $DG_STATE/gate-timed-out when the time ran out. A subshell: its background
# jobs must not become the phase's $! (the copy of its output to the logs).
dg_run_with_deadline() (
    local seconds=$1 pid timer first status
    shift
    rm -f "$DG_STATE/gate-timed-out"
    # Job control gives the background job a process group of its own.
    set -m
    "$@" &
    pid=$!
    set +m
    echo "$pid" >"$WORKSPACE/gate.pid"
    sleep "$seconds" </dev/null >/dev/null 2>&1 &
    timer=$!
    wait -n -p first "$pid" "$timer"
    status=$?
    if [[ $first == "$timer" ]]; then
        touch "$DG_STATE/gate-timed-out"
        kill -9 -- "-$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        status=137
    else
        kill "$timer" 2>/dev/null
        wait "$timer" 2>/dev/null
        # Whatever the hook left behind in its group goes too.
        kill -9 -- "-$pid" 2>/dev/null
    fi
    return "$status"
)

# -- cleanup -----------------------------------------------------------------

# Copy $1 to logs/$2 when it exists (creating directories).
dg_save() {
    [[ -e $1 ]] || return 0
    mkdir -p "$(dirname "$WORKSPACE/logs/$2")"
    cp -rL "$1" "$WORKSPACE/logs/$2" 2>/dev/null || true
}

dg_save_syslog() {
    local out=$WORKSPACE/logs/syslog.txt
    if [[ -f $DG_STATE/syslog-since ]] && command -v journalctl >/dev/null &&
        journalctl --since "$(cat "$DG_STATE/syslog-since")" --no-pager -q >"$out" 2>/dev/null; then
        echo "syslog.txt: the journal since the marker"
    elif [[ -f $DG_STATE/syslog-since && -r /var/log/syslog ]]; then
        awk -v since="$(cat "$DG_STATE/syslog-since")" '$0 ~ /devstack-gate: build/ {on=1} on' \
            /var/log/syslog >"$out"
        echo "syslog.txt: /var/log/syslog since the marker"
    else
        echo "no system log readable by this job ($DG_ADMIN_PROBLEM); the kit's own record:" >"$out"
        cat "$WORKSPACE"/logs/devstack-gate-*.txt >>"$out" 2>/dev/null
        echo "syslog.txt: the kit's own record (no system log readable here)"
    fi
}

# The host's state, for a failed build: disk, mounts, processes, packages.
dg_save_host_state() {
    local logs=$WORKSPACE/logs
    df -h >"$logs/df.txt" 2>&1
    (mount 2>/dev/null || cat /proc/mounts) >"$logs/mount.txt"
    ps -eo user,pid,ppid,lstart,args >"$logs/ps.txt" 2>&1 || ps aux >"$logs/ps.txt" 2>&1
    if command -v dpkg >/dev/null; then
        dpkg -l >"$logs/dpkg-l.txt" 2>&1
    elif command -v rpm >/dev/null; then
        rpm -qa >"$logs/rpm-qa.txt" 2>&1
    fi
    python3 -m pip freeze >"$logs/pip3-freeze.txt" 2>&1 || true
    echo "host state: df.txt mount.txt ps.txt packages pip3-freeze.txt"
}

# The clean-logs check: ERROR lines in the service logs fail the job.
dg_check_logs() {
    local dir=$BASE/new/screen-logs found
    found=$(grep -H ' ERROR ' "$dir"/screen-*.log 2>/dev/null | head -n 50)
    if [[ -n $found ]]; then
        echo "clean logs: ERROR lines in the service logs:"
        echo "$found" | sed 's/^/  /'
        return 1
    fi
    echo "clean logs: no ERROR lines in $(ls "$dir"/screen-*.log 2>/dev/null | wc -l) service logs"
}

dg_cleanup_host() {
    local logs=$WORKSPACE/logs new=$BASE/new f name
    if [[ -f $new/devstack/unstack.sh && -f $new/devstack/.stack-ran ]]; then
        # Let the services flush what they were writing, then stop them.
        sleep 1
        (cd "$new/devstack" && bash ./unstack.sh) || echo "unstack.sh failed"
    fi
    dg_save_syslog
    for f in "$new"/screen-logs/screen-*.log; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .log)
        # devstack keeps timestamped files behind screen-<svc>.log links.
        [[ $name == *.20* ]] && continue
        cp -L "$f" "$logs/$name.txt" && gzip -9f "$logs/$name.txt"
    done
    dg_save "$new/devstacklog.txt" devstacklog.txt
    dg_save "$new/devstacklog.txt.summary" devstacklog.summary.txt
    if [[ -f $new/devstack/local.conf ]]; then
        dg_save "$new/devstack/local.conf" local.conf.txt
        # localrc.txt: the [[local|localrc]] section, as devstack read it.
        awk '/^\[\[/ {on = ($0 == "[[local|localrc]]"); next} on' \
            "$new/devstack/local.conf" >"$logs/localrc.txt"
    fi
    dg_save "$new/tempest/etc/tempest.conf" tempest_conf.txt
    for f in "$new"/status/*.failure; do
        [[ -e $f ]] && dg_save "$f" "status/$(basename "$f" .failure).txt"
    done
    local etc=${ETC_DIR:-/etc} project short
    for project in $(dg_projects); do
        short=${project##*/}
        [[ -d $etc/$short ]] && dg_save "$etc/$short" "etc/$short"
    done
    dg_save_tests
    dg_save "$WORKSPACE/.gatekeeper/node.env" node.env.txt
    if [[ ${DG_RESULT:-0} != 0 ]]; then
        dg_save_host_state
    fi
    chmod -R a+rX "$logs" 2>/dev/null
    echo "logs: $(find "$logs" -type f | wc -l) files in logs/"
}

# Tempest's results: the subunit stream of the last run and its HTML page.
dg_save_tests() {
    local tempest=$BASE/new/tempest logs=$WORKSPACE/logs stestr=""
    [[ -d $tempest/.stestr || -d $tempest/.testrepository ]] || return 0
    if [[ -d $tempest/.stestr ]]; then
        stestr=$(command -v stestr || ls "$tempest"/.tox/*/bin/stestr 2>/dev/null | head -n 1)
        [[ -n $stestr ]] && (cd "$tempest" && "$stestr" last --subunit) >"$logs/testrepository.subunit" 2>/dev/null
    else
        (cd "$tempest" && testr last --subunit) >"$logs/testrepository.subunit" 2>/dev/null
    fi
    if [[ -s $logs/testrepository.subunit ]]; then
        if command -v subunit2html >/dev/null; then
            subunit2html "$logs/testrepository.subunit" "$logs/testr_results.html" >/dev/null
            echo "tests: testr_results.html from the last run's subunit stream"
        else
            echo "tests: no subunit2html on this node (os-testr): testr_results.html not made"
        fi
        gzip -9f "$logs/testrepository.subunit"
    fi
}
