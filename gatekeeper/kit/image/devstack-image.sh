# shellcheck shell=bash
# devstack-image.sh: prepare the pool's daily devstack image, as the seed's
# nodepool scripts did: the projects cloned into a git cache, a pip cache of
# their requirements, the packages devstack lists, and the `stack` user.
#
# Run by bash on the image's template (`gatekeeper images update`): over SSH
# on an openstack build server before the snapshot, or in the template
# directory of a local provider's image. One self-contained program, fed on
# stdin after the settings (gatekeeper.kit.image_kit_program writes them):
#
#   GATEKEEPER_IMAGE_ROOT      where the image's tree is: / on a server; the
#                              template directory of a local image
#   GATEKEEPER_IMAGE_GIT_URL   the projects are cloned from <url>/<project>
#   GATEKEEPER_IMAGE_PROJECTS  the projects, separated by spaces
#
# It lays out (under the root): opt/git/<project> (a clone of each project,
# at its branch tips: the wrap's workspace phase seeds from it, found through
# GATEKEEPER_GIT_CACHE), opt/cache/pip (wheels and sdists of the projects'
# requirements), opt/cache/packages.txt (the packages devstack lists) and
# opt/cache/image-kit.txt (what this build put in the image).
#
# The host is changed (packages downloaded, a user made) only when the root
# is / and this runs as root or has passwordless sudo: a local image is a
# directory on gatekeeper's own host, which is not the image's to change;
# there the output says so.

set -eu -o pipefail

ROOT=${GATEKEEPER_IMAGE_ROOT:-/}
ROOT=${ROOT%/}
GIT_URL=${GATEKEEPER_IMAGE_GIT_URL:?the git URL the image clones from}
GIT_URL=${GIT_URL%/}
read -r -a PROJECT_LIST <<<"${GATEKEEPER_IMAGE_PROJECTS:?the projects to cache}"
GIT_CACHE=$ROOT/opt/git
CACHE=$ROOT/opt/cache
PIP_CACHE=$CACHE/pip

say() {
    echo "image kit: $*"
}

# How to act as root on the image (AS_ROOT), or why the host may not be
# changed here (REFUSAL).
AS_ROOT=()
REFUSAL=""
if [ -n "$ROOT" ]; then
    REFUSAL="the image is a directory, not a machine: this host is not the image's to change"
elif [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then
        AS_ROOT=(sudo -n)
    else
        REFUSAL="not root, and no passwordless sudo"
    fi
fi

if [ -z "$ROOT" ] && [ -z "$REFUSAL" ]; then
    # /opt is root's; the caches are the login user's, as the job reads them.
    "${AS_ROOT[@]}" mkdir -p "$GIT_CACHE" "$PIP_CACHE"
    "${AS_ROOT[@]}" chown "$(id -u):$(id -g)" "$GIT_CACHE" "$CACHE" "$PIP_CACHE"
fi
if ! mkdir -p "$GIT_CACHE" "$PIP_CACHE" 2>/dev/null || [ ! -w "$GIT_CACHE" ]; then
    echo "image kit: ERROR: cannot write $GIT_CACHE ($REFUSAL)" >&2
    exit 1
fi
manifest=$CACHE/image-kit.txt
{
    echo "# gatekeeper devstack image kit, $(date -u +%FT%TZ)"
    echo "git-url $GIT_URL"
} >"$manifest"

# --- the git cache ------------------------------------------------------------
# A clone per project with every branch of the remote; an image built on the
# previous one (its base already has the cache) only fetches.
for project in "${PROJECT_LIST[@]}"; do
    case "$project" in
        /* | *..* | *[!A-Za-z0-9_./-]*)
            echo "image kit: ERROR: unsafe project name '$project'" >&2
            exit 2
            ;;
    esac
    dest=$GIT_CACHE/$project
    if [ -d "$dest/.git" ]; then
        git -C "$dest" remote set-url origin "$GIT_URL/$project"
        git -C "$dest" fetch --quiet --prune origin
    else
        mkdir -p "$(dirname "$dest")"
        git clone --quiet "$GIT_URL/$project" "$dest"
    fi
    # Check out the remote's default branch at its tip.
    head=$(git -C "$dest" symbolic-ref --quiet --short refs/remotes/origin/HEAD 2>/dev/null || echo origin/master)
    git -C "$dest" checkout --quiet --force -B "${head#origin/}" "$head"
    echo "git $project ${head#origin/} $(git -C "$dest" rev-parse HEAD)" >>"$manifest"
    say "cached $project at $(git -C "$dest" rev-parse --short HEAD) (${head#origin/})"
done

# --- the packages devstack lists ---------------------------------------------
# devstack names its distro packages in files/debs/<service>, one a line:
# "# NOPRIME" marks one it installs only when the service runs, and
# "# dist:jammy,noble" one for those releases only.
codename=$(
    # shellcheck disable=SC1091
    . "$ROOT/etc/os-release" 2>/dev/null && echo "${VERSION_CODENAME:-}"
) || codename=""
packages=$CACHE/packages.txt
{
    # What every devstack node needs before stack.sh can start.
    printf '%s\n' git python3-dev python3-pip python3-venv build-essential libssl-dev libffi-dev sudo rsync
    for project in openstack/devstack openstack-dev/devstack; do
        for list in "$GIT_CACHE/$project"/files/debs/*; do
            [ -f "$list" ] || continue
            awk -v release="$codename" '
                /NOPRIME/ { next }
                {
                    line = $0
                    package = line
                    sub(/[ \t]*#.*/, "", package)
                    gsub(/[ \t]/, "", package)
                    if (package == "") next
                    if (release != "" && match(line, /dist:[^ \t]*/)) {
                        dists = "," substr(line, RSTART + 5, RLENGTH - 5) ","
                        if (index(dists, "," release ",") == 0) next
                    }
                    print package
                }' "$list"
        done
    done
} | sort -u >"$packages"
count=$(wc -l <"$packages")
if [ -n "$REFUSAL" ]; then
    say "packages: not installed ($REFUSAL); the $count packages are listed in ${packages#"$ROOT"}"
elif ! command -v apt-get >/dev/null; then
    say "packages: not installed (no apt-get on this image); the $count packages are listed in ${packages#"$ROOT"}"
else
    # Downloaded into apt's cache, not installed: stack.sh installs what the
    # job's services need, from the cache, as it would on a fresh node. A
    # name this release's archive lacks is reported, not fatal: stack.sh
    # fails on it only if a job's services need it.
    "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update
    known=() unknown=()
    while read -r package; do
        if apt-cache show "$package" >/dev/null 2>&1; then
            known+=("$package")
        else
            unknown+=("$package")
        fi
    done <"$packages"
    "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y --download-only install "${known[@]}"
    say "packages: ${#known[@]} downloaded into apt's cache"
    if [ "${#unknown[@]}" -gt 0 ]; then
        say "packages: not in this release's archive: ${unknown[*]}"
    fi
fi

# --- the pip cache ---------------------------------------------------------------
# The projects' requirements, downloaded with the host's pip settings (its
# index or mirror, PIP_* variables), so stack.sh installs them locally.
python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -m pip --version >/dev/null 2>&1; then
    say "pip cache: skipped (no python3 with pip on this image)"
else
    wanted=0
    for project in "${PROJECT_LIST[@]}"; do
        requirements=$GIT_CACHE/$project/requirements.txt
        [ -f "$requirements" ] || continue
        wanted=$((wanted + 1))
        "$python" -m pip download --quiet --disable-pip-version-check --dest "$PIP_CACHE" -r "$requirements"
    done
    files=$(find "$PIP_CACHE" -maxdepth 1 -type f | wc -l)
    echo "pip-cache $files files" >>"$manifest"
    say "pip cache: $files files for the requirements of $wanted projects"
fi

# --- the stack user ----------------------------------------------------------------
if [ -n "$REFUSAL" ]; then
    say "stack user: not created ($REFUSAL); the wrap's host phase says so on the node"
else
    if ! id stack >/dev/null 2>&1; then
        "${AS_ROOT[@]}" useradd --create-home --home-dir /opt/stack --shell /bin/bash stack
    fi
    echo "stack ALL=(root) NOPASSWD:ALL" | "${AS_ROOT[@]}" tee /etc/sudoers.d/50_stack_sh >/dev/null
    "${AS_ROOT[@]}" chmod 0440 /etc/sudoers.d/50_stack_sh
    "${AS_ROOT[@]}" chown -R stack:stack /opt/stack
    say "stack user: ready (home /opt/stack, sudo until the wrap drops it)"
fi

say "done: ${#PROJECT_LIST[@]} projects in ${GIT_CACHE#"$ROOT"}"
