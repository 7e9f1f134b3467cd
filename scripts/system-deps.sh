#!/usr/bin/env bash
# Installs the system packages gatekeeper and its tests use, when missing
# (bubblewrap confines jobs on the local provider).
# `--all` also installs what only the tests use (sshd, gearmand, PostgreSQL,
# Chromium and its WebDriver for the browser tests, tox and os-testr for the
# devstack job's tempest); `--bench` what only the
# benchmarks use (nginx and curl, the baseline of bench/web_logs.py).
set -euo pipefail

need=(git rsync openssh-client bubblewrap)
if [[ "${1:-}" == "--all" ]]; then
    need+=(openssh-server gearman-job-server postgresql chromium chromium-driver)
    # The devstack job's stand-in tempest: tox, stestr and subunit2html.
    need+=(tox python3-os-testr)
fi
if [[ "${1:-}" == "--bench" ]]; then
    need+=(nginx curl)
fi

missing=()
for pkg in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "gatekeeper needs: ${missing[*]} (install them with your package manager)" >&2
    exit 1
fi
sudo=()
[[ $(id -u) -ne 0 ]] && sudo=(sudo)
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
