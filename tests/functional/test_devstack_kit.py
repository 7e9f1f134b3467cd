"""The devstack job kit through the whole daemon, on a confined local node
and on a static node over real SSH.

The default layout's job runs the shipped kit (devstack-vm-gate-wrap.sh) on
a node of the ``local`` provider, confined by real bubblewrap, against the
Gerrit simulator. devstack itself is a stand-in (real devstack needs
OpenStack's git servers and a whole VM; see tests/fixtures/devstack.py):
its stack.sh reads local.conf and starts two small services, its
exercise.sh passes, skips and fails exercises, and its tempest is a tox
project run by stestr. Everything else (the phases, the workspace, the
hooks, the deadline, cleanup, the log tree, reproduce.sh) is the real kit
run by bash on the node.

Each change carries its own hook (contrib/ci/pre_test_hook.sh), so one
sandbox serves every story: the hook exports what an old job definition
would have (DEVSTACK_GATE_TEMPEST=1, DEVSTACK_LOCAL_CONFIG).
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.devstack import (
    archive_of,
    build_of,
    default_layout,
    hook,
    phases,
    seed_image_cache,
)
from tests.fixtures.sshd import SSHServer

pytestmark = pytest.mark.timeout(180)

#: The kit's phases, in order, as the console's footers name them.
PHASES = [
    "setup host",
    "setup workspace",
    "write reproduce.sh",
    "pre_test_hook",
    "gate_hook",
    "post_test_hook",
    "cleanup host",
]

#: What every build leaves under logs/, whatever its end (devstack-gate's names).
ALWAYS = {
    "devstack-gate-setup-host.txt",
    "devstack-gate-setup-workspace-new.txt",
    "devstack-gate-reproduce.txt",
    "devstack-gate-pre-test-hook.txt",
    "devstack-gate-gate-hook.txt",
    "devstack-gate-cleanup-host.txt",
    "reproduce.sh",
    "syslog.txt",
    "local.conf.txt",
    "localrc.txt",
    "devstacklog.txt",
    "devstacklog.summary.txt",
    # The node's provider, region, zone, label and name (the worker's node.env).
    "node.env.txt",
}
#: The host's state, collected when the build failed.
HOST_STATE = {"df.txt", "mount.txt", "ps.txt", "dpkg-l.txt", "pip3-freeze.txt"}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The default layout (its job's timeout cut to 32 s, so a hang ends
    soon) on the default confined local provider, whose image holds a git
    cache of every project (as the image kit leaves it)."""
    tmp = tmp_path_factory.mktemp("devstack-kit")
    sandbox = Sandbox(tmp / "sandbox", default_layout(tmp / "layout.yaml", timeout=32))
    try:
        sandbox.start_gerrit()
        seed_image_cache(sandbox, sandbox.root / "state" / "images" / "devstack-vm")
        sandbox.start_daemon()
        yield sandbox
    finally:
        sandbox.stop()


def logs_tree(archive: Path) -> set[str]:
    """The files under logs/, without the archive's index pages."""
    logs = archive / "logs"
    return {str(p.relative_to(logs)) for p in logs.rglob("*") if p.is_file()} - {
        str(p.relative_to(logs)) for p in logs.rglob("index.html")
    }


def test_a_devstack_build_leaves_devstack_gates_log_tree(box: Sandbox) -> None:
    assert box.sim is not None and box.app is not None
    number, _ = box.push_change(
        "openstack/nova", "Run tempest too", hook("export DEVSTACK_GATE_TEMPEST=1\n")
    )
    box.wait_until_settled()
    assert box.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
    record = build_of(box, number)
    assert record.result == "SUCCESS"
    archive = archive_of(box, record)
    console = (archive / "console.txt").read_text()

    # Every phase, in order, each with its time; the confined node says why
    # it does not set the host up.
    assert phases(console) == dict.fromkeys(PHASES, "done")
    assert [t for t in re.findall(r"^== (.+?):", console, re.M) if t in PHASES] == PHASES
    assert "skipped: hosts file, syslog marker, stack user with sudo" in console
    assert "without passwordless sudo (a confined or unprivileged node)" in console
    # The image's cache seeded every repository; the change is what nova runs.
    assert "openstack/nova: seeded from the image cache /node/opt/git/openstack/nova" in console
    assert "pre_test_hook: nova/contrib/ci/pre_test_hook.sh" in console
    # exercise.sh's summary: flavors pass through nova's code, euca is the
    # gate's usual skip, swift skips itself (exit 55).
    summary = console[console.index("*** Running") :]
    for line in ("SKIP euca", "SKIP swift", "PASS flavors", "PASS services", "PASS volumes"):
        assert line in summary
    assert "tox -e smoke -- --concurrency=" in console
    assert "-- clean logs: ok" in console

    assert logs_tree(archive) == ALWAYS | {
        "devstack-gate-post-test-hook.txt",
        "screen-key.txt.gz",
        "screen-n-api.txt.gz",
        "etc/keystone/keystone.conf",
        "etc/nova/nova.conf",
        "tempest_conf.txt",
        "testr_results.html",
        "testrepository.subunit.gz",
    }
    logs = archive / "logs"
    localrc = (logs / "localrc.txt").read_text().splitlines()
    assert "DEST=/node/opt/stack/new" in localrc and "ERROR_ON_CLONE=True" in localrc
    assert "LOGFILE=/node/opt/stack/new/devstacklog.txt" in localrc
    assert (logs / "local.conf.txt").read_text().startswith("[[local|localrc]]\n")
    assert f"NODE_NAME={record.node}" in (logs / "node.env.txt").read_text()
    with gzip.open(logs / "screen-n-api.txt.gz", "rt") as fh:
        assert " INFO n-api [-] started with /node/opt/stack/etc/nova/nova.conf" in fh.read()
    assert "stack.sh completed in" in (logs / "devstacklog.summary.txt").read_text()
    enabled = re.search(r"ENABLED_SERVICES=(\S+)", (logs / "devstacklog.txt").read_text())
    assert enabled and "tempest" in enabled.group(1).split(",")
    assert "[service_available]\nnova = True" in (logs / "tempest_conf.txt").read_text()
    html = (logs / "testr_results.html").read_text()
    assert "test_smoke_nova_api_is_running" in html and "test_nova_is_available" not in html
    # Each phase's own log, every line stamped as devstack-gate's tsfilter did.
    setup_host = (logs / "devstack-gate-setup-host.txt").read_text()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| host: ", setup_host)
    assert (logs / "reproduce.sh").read_text().startswith("#!/usr/bin/env bash\n")

    # The web shows a gzipped service log as text.
    url = f"{box.app.web_url}logs/{record.log_url[len(box.site.log_url) :]}"
    with urllib.request.urlopen(url + "logs/screen-key.txt.gz", timeout=30) as response:
        assert b"INFO key [-] started" in response.read()


def test_stack_sh_failing_fails_the_build_with_the_hosts_state(box: Sandbox) -> None:
    assert box.sim is not None
    number, _ = box.push_change(
        "openstack/glance",
        "Enable a service devstack does not know",
        hook('export DEVSTACK_LOCAL_CONFIG="ENABLED_SERVICES+=,bogus"\n'),
    )
    box.wait_until_settled()
    assert box.sim.get_change(number).votes["Verified"] == {"gatekeeper": -1}
    record = build_of(box, number)
    assert record.result == "FAILURE"
    archive = archive_of(box, record)
    console = (archive / "console.txt").read_text()
    done = phases(console)
    assert done["gate_hook"] == "FAILED, exit 1" and done["cleanup host"] == "done"
    assert "post_test_hook" not in done  # it runs only after a gate that passed
    assert "-- stack.sh: FAILED, exit 1" in console
    assert "[ERROR] unknown service bogus in ENABLED_SERVICES" in console
    assert "ERROR: the main setup script run by this job failed - exit code: 1" in console
    assert logs_tree(archive) == ALWAYS | HOST_STATE
    logs = archive / "logs"
    assert "unknown service bogus" in (logs / "devstacklog.txt").read_text()
    assert "ENABLED_SERVICES+=,bogus" in (logs / "localrc.txt").read_text()
    assert "Filesystem" in (logs / "df.txt").read_text()
    assert "devstack-vm-gate-wrap.sh" in (logs / "ps.txt").read_text()


@pytest.mark.slow  # the hang runs out the build's 32 s
@pytest.mark.timeout(240)
def test_a_hang_times_out_and_cleanup_still_collects_the_logs(box: Sandbox) -> None:
    assert box.sim is not None
    number, _ = box.push_change(
        "openstack/keystone",
        "Wait for a service that never answers",
        hook('export DEVSTACK_LOCAL_CONFIG="STANDIN_HANG=True"\n'),
    )
    box.wait_until_settled(timeout=150)
    record = build_of(box, number)
    assert record.result == "TIMED_OUT"
    archive = archive_of(box, record)
    console = (archive / "console.txt").read_text()
    # The kit kills the gate hook before the build's own timeout (32 s, less
    # a quarter for cleanup), collects the logs and says it timed out.
    assert "gate_hook has " in console
    done = phases(console)
    assert done["gate_hook"] == "FAILED, exit 137" and done["cleanup host"] == "done"
    assert "ERROR: the gate hook ran out of time" in console
    assert "devstack-vm-gate-wrap: exit 124" in console
    assert logs_tree(archive) == ALWAYS | HOST_STATE | {
        "screen-key.txt.gz",
        "screen-n-api.txt.gz",
        "etc/keystone/keystone.conf",
        "etc/nova/nova.conf",
    }
    assert "waiting for n-api to answer" in (archive / "logs" / "devstacklog.txt").read_text()


def test_reproduce_sh_rebuilds_the_same_tree_on_a_fresh_directory(
    box: Sandbox, tmp_path: Path
) -> None:
    """reproduce.sh from a build's logs, run by hand in an empty directory
    of this host (not confined, as a developer would), fetching from Gerrit's
    repositories on disk (REPRODUCE_ZUUL_URL, as a developer points it at a
    mirror)."""
    assert box.sim is not None
    number, _ = box.push_change(
        "openstack/horizon", "Reproduce me", {"horizon/panels.txt": "overview\n"}
    )
    box.wait_until_settled()
    record = build_of(box, number)
    assert record.result == "SUCCESS"
    logs = archive_of(box, record) / "logs"
    script = (logs / "reproduce.sh").read_text()
    assert "declare -x ZUUL_CHANGE=" in script and "declare -x DEVSTACK_GATE_EXERCISES=1" in script
    # This host is not a throw-away VM: the reproduction must not set it up,
    # and nothing in the script may say otherwise.
    assert "DEVSTACK_GATE_SETUP_HOST" not in script

    fresh = tmp_path / "vm"
    fresh.mkdir()
    (fresh / "reproduce.sh").write_text(script)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(fresh),
        "DEVSTACK_GATE_SETUP_HOST": "0",
        "REPRODUCE_ZUUL_URL": str(box.sim.root / "git"),
    }
    done = subprocess.run(
        ["bash", "reproduce.sh", str(fresh / "workspace")],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    again = fresh / "workspace" / "logs"

    def commits(setup_log: str) -> dict[str, str]:
        return dict(re.findall(r"\| (\S+): \S+ at ([0-9a-f]{40}) ", setup_log))

    built = commits((logs / "devstack-gate-setup-workspace-new.txt").read_text())
    redone = commits((again / "devstack-gate-setup-workspace-new.txt").read_text())
    assert len(built) == 8 and redone == built
    assert "same commit as the build" in done.stdout and "WARNING" not in done.stdout
    # The same local.conf, but for where each node keeps devstack (BASE).
    original = (logs / "local.conf.txt").read_text()
    reproduced = (again / "local.conf.txt").read_text()
    assert reproduced.replace(str(fresh / "opt" / "stack"), "/node/opt/stack") == original
    assert os.path.isdir(fresh / "opt" / "stack" / "new" / "horizon" / "horizon")


@pytest.mark.sshd
def test_the_devstack_job_on_a_static_node_over_ssh(sshd: SSHServer, tmp_path: Path) -> None:
    """The same job on the ``static`` provider: a real sshd on 127.0.0.1 as
    the node, the kit pushed with the workspace by rsync over SSH and run
    through paramiko. The host is this test machine, not a throw-away VM, so
    the job says so (DEVSTACK_GATE_SETUP_HOST=0) though it logs in as root;
    there is no image cache, so every repository is cloned from the
    workspace."""
    workdir = tmp_path / "static"
    host = {
        "name": "static-1",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "private-key": str(sshd.private_key),
        "known-hosts": str(sshd.known_hosts),
        "label": "devstack-vm",
        "workdir": str(workdir),
    }
    # The job also brings a hook the old way: an exported bash function.
    exports = """export DEVSTACK_GATE_SETUP_HOST=0
    post_test_hook() { echo "post_test_hook saw $BASE" | tee logs/post-hook.txt; }
    export -f post_test_hook"""
    layout = default_layout(tmp_path / "layout.yaml", exports=exports)
    sandbox = Sandbox(
        tmp_path / "sandbox",
        layout,
        worker_count=1,
        extra_site={
            "providers": [{"name": "lab", "driver": "static", "hosts": [host]}],
            "labels": [{"name": "devstack-vm", "min-ready": 1}],
        },
    )
    try:
        sandbox.start()
        assert sandbox.sim is not None
        number, _ = sandbox.push_change("openstack/nova", "Over SSH", {"nova/ssh.txt": "x\n"})
        sandbox.wait_until_settled()
        assert sandbox.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
        record = build_of(sandbox, number)
        assert (record.result, record.node) == ("SUCCESS", "static-1")
        archive = archive_of(sandbox, record)
    finally:
        sandbox.stop()
    console = (archive / "console.txt").read_text()
    assert "NODE_PROVIDER=lab" in console
    assert phases(console) == dict.fromkeys(PHASES, "done")
    assert "because DEVSTACK_GATE_SETUP_HOST=0: this host is not the job's to change" in console
    node = workdir / "static-1"
    assert (
        f"openstack/nova: cloned from {node}/workspace/openstack/nova (no image cache)" in console
    )
    assert "PASS flavors" in console
    assert "post_test_hook: the job's function" in console
    assert (archive / "logs" / "post-hook.txt").read_text() == (
        f"post_test_hook saw {node}/opt/stack\n"
    )
    # reproduce.sh carries it, for the developer's run.
    reproduce = (archive / "logs" / "reproduce.sh").read_text()
    assert "post_test_hook () \n{ \n" in reproduce and "export -f post_test_hook" in reproduce
    assert logs_tree(archive) == ALWAYS | {
        "post-hook.txt",
        "devstack-gate-post-test-hook.txt",
        "screen-key.txt.gz",
        "screen-n-api.txt.gz",
        "etc/keystone/keystone.conf",
        "etc/nova/nova.conf",
    }
    localrc = (archive / "logs" / "localrc.txt").read_text().splitlines()
    assert f"DEST={node}/opt/stack/new" in localrc
