"""The kit's setup-host phase on a host the job may administer.

This machine is nobody's throw-away VM, so the phase runs in a throw-away
view of it: bubblewrap's own pid and hostname namespaces, a copy of /etc
bound over /etc and a fresh /opt, as root (no user namespace: the real
useradd writes the copied passwd and group files). Skipped where that
cannot be had (not root, no bubblewrap).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gatekeeper.kit import DEVSTACK_GATE

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="makes users: needs root (in a jail)"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd"),
]

CHECK = """
source {functions}
DG_ADMIN=1 DG_STATE={state} BASE=/opt/stack WORKSPACE={state}
dg_setup_host
echo "status $?"
id -un stack; id -un tempest
cat /etc/sudoers.d/50_stack_sh /etc/sudoers.d/51_tempest_sh
grep -w devstack-node /etc/hosts
stat -c '%U %n' /opt/stack/new
"""


def test_setup_host_adds_the_hosts_line_the_users_and_their_sudo(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=False, capture_output=True)
    state = tmp_path / "state"
    state.mkdir()
    script = CHECK.format(functions=DEVSTACK_GATE / "functions.sh", state=state)
    argv = ["bwrap", "--bind", "/", "/", "--bind", str(etc), "/etc", "--tmpfs", "/opt"]
    argv += ["--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-uts"]
    argv += ["--hostname", "devstack-node", "--die-with-parent", "bash", "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50, check=False)
    out = done.stdout.splitlines()
    assert "status 0" in out, done.stdout + done.stderr
    assert "host: devstack-node, " in done.stdout and "hosts: added devstack-node" in out
    assert out[out.index("status 0") + 1 :] == [
        "stack",
        "tempest",
        "stack ALL=(root) NOPASSWD:ALL",
        "tempest ALL=(root) NOPASSWD:/sbin/ip, NOPASSWD:/sbin/iptables, "
        "NOPASSWD:/usr/bin/ovsdb-client",
        "127.0.1.1 devstack-node",
        "stack /opt/stack/new",
    ]
    assert (state / "syslog-since").is_file()  # cleanup keeps syslog from here on
    # The real host was not touched.
    assert "devstack-node" not in Path("/etc/hosts").read_text()
