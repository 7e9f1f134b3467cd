"""The devstack kit's ``local-conf.sh``: every supported ``DEVSTACK_GATE_*``
switch changes the generated ``local.conf`` (or the values the wrap reads)
the way devstack-gate did.

Each row runs the real bash functions (``dg_export_defaults``,
``dg_write_local_conf``, ``dg_tempest_tox_env``) under ``set -eu`` with only
the row's variables set, and compares the result with the run where nothing
is set: the row names exactly what it adds and removes, so a switch that
changes nothing, or more than it should, fails.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatekeeper.kit import DEVSTACK_GATE

pytestmark = pytest.mark.timeout(30)

LOCAL_CONF = DEVSTACK_GATE / "local-conf.sh"
SERVICES = "ENABLED_SERVICES="

# Prints what a row is checked on: the exported variables, then the tox env.
SCRIPT = """
set -eu
source "$KIT"
dg_write_local_conf "$OUT"
env -0 > "$OUT/env"
dg_tempest_tox_env > "$OUT/tox"
"""


@dataclass
class Generated:
    """What one run of local-conf.sh produced."""

    lines: list[str]
    services: list[str]
    tox: str
    env: dict[str, str]
    text: str


def generate(tmp_path: Path, variables: dict[str, str]) -> Generated:
    """Run local-conf.sh with only ``variables`` (and a PATH) set.

    :raises AssertionError: bash failed.
    """
    out = tmp_path / "devstack"
    out.mkdir()
    env = {"PATH": os.environ["PATH"], "KIT": str(LOCAL_CONF), "OUT": str(out), **variables}
    done = subprocess.run(
        ["bash", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    text = (out / "local.conf").read_text()
    lines = text.splitlines()
    (services_line,) = [line for line in lines if line.startswith(SERVICES)]
    exported = dict(
        entry.split("=", 1) for entry in (out / "env").read_text().split("\0") if "=" in entry
    )
    return Generated(
        lines=[line for line in lines if line != services_line],
        services=services_line[len(SERVICES) :].split(","),
        tox=(out / "tox").read_text().strip(),
        env=exported,
        text=text,
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """local.conf for a job that sets nothing."""
    return generate(tmp_path_factory.mktemp("baseline"), {})


@dataclass
class Row:
    """One switch: the variables a job sets, and what must change because of it."""

    variables: dict[str, str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    services_added: list[str] = field(default_factory=list)
    services_removed: list[str] = field(default_factory=list)
    tox: str = ""
    exported: dict[str, str] = field(default_factory=dict)


TEMPEST_LINES = ["API_RATE_LIMIT=False", "VOLUME_BACKING_FILE_SIZE=24G"]
TEMPEST = {"DEVSTACK_GATE_TEMPEST": "1"}


def tempest(tox: str, **variables: str) -> Row:
    """A tempest row: tempest configured, run in ``tox``."""
    return Row({**TEMPEST, **variables}, TEMPEST_LINES, services_added=["tempest"], tox=tox)


NEUTRON_SERVICES = ["q-svc", "q-agt", "q-dhcp", "q-l3", "q-meta", "q-metering"]
NEUTRON_LINES = ["Q_USE_DEBUG_COMMAND=True", "NETWORK_GATEWAY=10.1.0.1"]
CINDER = ["c-api", "c-bak", "c-sch", "c-vol", "cinder"]
SWIFT = ["s-proxy", "s-account", "s-container", "s-object"]

ROWS: dict[str, Row] = {
    # -- tempest: configured, and the tox env the first flag set chooses
    "tempest": tempest("smoke"),
    "tempest-full": tempest("full", DEVSTACK_GATE_TEMPEST_FULL="1"),
    "tempest-all": tempest("all", DEVSTACK_GATE_TEMPEST_ALL="1"),
    "tempest-regex": Row(
        {**TEMPEST, "DEVSTACK_GATE_TEMPEST_REGEX": r"tempest\.api\.(compute|image)"},
        TEMPEST_LINES,
        services_added=["tempest"],
        tox=r"all -- tempest\.api\.(compute|image)",
        exported={"DEVSTACK_GATE_TEMPEST_REGEX": r"tempest\.api\.(compute|image)"},
    ),
    "tempest-all-plugins": tempest("all-plugin", DEVSTACK_GATE_TEMPEST_ALL_PLUGINS="1"),
    # The regex outranks full, as in devstack-gate's chain of ifs.
    "tempest-regex-beats-full": tempest(
        "all -- api", DEVSTACK_GATE_TEMPEST_FULL="1", DEVSTACK_GATE_TEMPEST_REGEX="api"
    ),
    "tempest-regex-in-all-plugins": tempest(
        "all-plugin -- api",
        DEVSTACK_GATE_TEMPEST_ALL_PLUGINS="1",
        DEVSTACK_GATE_TEMPEST_REGEX="api",
    ),
    "tempest-testr-full": tempest("testr-full", DEVSTACK_GATE_TEMPEST_TESTR_FULL="1"),
    "tempest-stress": tempest("stress", DEVSTACK_GATE_TEMPEST_STRESS="1"),
    "tempest-heat-slow": tempest("heat-slow", DEVSTACK_GATE_TEMPEST_HEAT_SLOW="1"),
    "tempest-smoke-serial": tempest("smoke-serial", DEVSTACK_GATE_SMOKE_SERIAL="1"),
    "tempest-notests": tempest("", DEVSTACK_GATE_TEMPEST_NOTESTS="1"),
    # A tempest flag without DEVSTACK_GATE_TEMPEST runs nothing.
    "tempest-full-alone": Row({"DEVSTACK_GATE_TEMPEST_FULL": "1"}),
    "tempest-no-tenant-isolation": Row(
        {**TEMPEST, "DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION": "1"},
        [
            *TEMPEST_LINES,
            "TEMPEST_ALLOW_TENANT_ISOLATION=False",
            "",
            "[[test-config|$TEMPEST_CONFIG]]",
            "[auth]",
            "use_dynamic_credentials = False",
        ],
        services_added=["tempest"],
        tox="full-serial",
    ),
    "tempest-large-ops": Row(
        {**TEMPEST, "DEVSTACK_GATE_TEMPEST_LARGE_OPS": "1"},
        [*TEMPEST_LINES, "VIRT_DRIVER=fake", "NUMBER_FAKE_NOVA_COMPUTE=50"],
        ["VIRT_DRIVER=libvirt", "LIBVIRT_TYPE=qemu"],
        services_added=["tempest"],
        tox="large-ops",
    ),
    "grenade-forces-tempest": Row(
        {"DEVSTACK_GATE_GRENADE": "pullup"},
        TEMPEST_LINES,
        services_added=["tempest"],
        tox="smoke",
        exported={"DEVSTACK_GATE_TEMPEST": "1", "DEVSTACK_GATE_GRENADE": "pullup"},
    ),
    # -- exercises
    "exercises": Row(
        {"DEVSTACK_GATE_EXERCISES": "1"},
        ["SKIP_EXERCISES=boot_from_volume,bundle,client-env,euca"],
    ),
    # -- networking
    "neutron": Row(
        {"DEVSTACK_GATE_NEUTRON": "1"},
        NEUTRON_LINES,
        services_added=NEUTRON_SERVICES,
        services_removed=["n-net"],
    ),
    "neutron-dvr": Row(
        {"DEVSTACK_GATE_NEUTRON": "1", "DEVSTACK_GATE_NEUTRON_DVR": "1"},
        [
            *NEUTRON_LINES,
            "Q_DVR_MODE=dvr_snat",
            "",
            "[[post-config|$NEUTRON_CONF]]",
            "[DEFAULT]",
            "router_distributed = True",
        ],
        services_added=NEUTRON_SERVICES,
        services_removed=["n-net"],
    ),
    # DVR is a neutron mode: alone it changes nothing.
    "neutron-dvr-alone": Row({"DEVSTACK_GATE_NEUTRON_DVR": "1"}),
    # -- database and message bus
    "postgres": Row(
        {"DEVSTACK_GATE_POSTGRES": "1"},
        ["DATABASE_TYPE=postgresql"],
        services_added=["postgresql"],
        services_removed=["mysql"],
    ),
    "mq-driver-zeromq": Row(
        {"DEVSTACK_GATE_MQ_DRIVER": "zeromq"},
        services_added=["zeromq"],
        services_removed=["rabbit"],
    ),
    "mq-driver-qpid": Row(
        {"DEVSTACK_GATE_MQ_DRIVER": "qpid"}, services_added=["qpid"], services_removed=["rabbit"]
    ),
    "zeromq-old-spelling": Row(
        {"DEVSTACK_GATE_ZEROMQ": "1"},
        services_added=["zeromq"],
        services_removed=["rabbit"],
        exported={"DEVSTACK_GATE_MQ_DRIVER": "zeromq"},
    ),
    # -- compute
    "virt-driver-fake": Row(
        {"DEVSTACK_GATE_VIRT_DRIVER": "fake"},
        ["VIRT_DRIVER=fake", "NUMBER_FAKE_NOVA_COMPUTE=50"],
        ["VIRT_DRIVER=libvirt", "LIBVIRT_TYPE=qemu"],
    ),
    "virt-driver-xenapi": Row(
        {"DEVSTACK_GATE_VIRT_DRIVER": "xenapi"},
        [
            "VIRT_DRIVER=xenapi",
            "XENAPI_PASSWORD=secretxen",
            "XENAPI_CONNECTION_URL=http://169.254.0.1",
        ],
        ["VIRT_DRIVER=libvirt", "LIBVIRT_TYPE=qemu"],
    ),
    "libvirt-type-kvm": Row(
        {"DEVSTACK_GATE_LIBVIRT_TYPE": "kvm"}, ["LIBVIRT_TYPE=kvm"], ["LIBVIRT_TYPE=qemu"]
    ),
    "cells": Row({"DEVSTACK_GATE_CELLS": "1"}, services_added=["n-cell"], services_removed=CINDER),
    "ironic": Row(
        {"DEVSTACK_GATE_IRONIC": "1"},
        [
            "VIRT_DRIVER=ironic",
            "IRONIC_DEPLOY_DRIVER=pxe_ssh",
            "IRONIC_VM_COUNT=3",
            "IRONIC_VM_SPECS_RAM=512",
            "IRONIC_BAREMETAL_BASIC_OPS=True",
            "DEFAULT_INSTANCE_TYPE=baremetal",
            "BUILD_TIMEOUT=600",
        ],
        ["VIRT_DRIVER=libvirt", "LIBVIRT_TYPE=qemu"],
        services_added=["ir-api", "ir-cond"],
        services_removed=CINDER + SWIFT,
    ),
    "ceph": Row(
        {"DEVSTACK_GATE_CEPH": "1"},
        ["CINDER_ENABLED_BACKENDS=ceph:ceph", "GLANCE_STORE=rbd", "REMOTE_CEPH=False"],
        services_added=["ceph"],
    ),
    "trove": Row(
        {"DEVSTACK_GATE_TROVE": "1"},
        services_added=["trove", "tr-api", "tr-tmgr", "tr-cond"],
    ),
    "sahara": Row(
        {"DEVSTACK_GATE_SAHARA": "1"},
        services_added=["sahara"],
    ),
    "marconi": Row(
        {"DEVSTACK_GATE_MARCONI": "1"},
        services_added=["zaqar-server"],
    ),
    "tls-proxy": Row({"DEVSTACK_GATE_TLSPROXY": "1"}, services_added=["tls-proxy"]),
    "enabled-services-from-the-job": Row(
        {"ENABLED_SERVICES": "n-api-meta,heat"}, services_added=["n-api-meta", "heat"]
    ),
    # -- the node and the install
    "config-drive": Row(
        {"DEVSTACK_GATE_CONFIGDRIVE": "1"},
        ["FORCE_CONFIG_DRIVE=always"],
        ["FORCE_CONFIG_DRIVE=False"],
    ),
    "topology-multinode": Row(
        {"DEVSTACK_GATE_TOPOLOGY": "multinode", "PRIMARY_NODE_IP": "10.0.0.5"},
        [
            "MULTI_HOST=True",
            "SERVICE_HOST=10.0.0.5",
            "DATABASE_HOST=10.0.0.5",
            "RABBIT_HOST=10.0.0.5",
            "GLANCE_HOSTPORT=10.0.0.5:9292",
        ],
    ),
    "install-testonly": Row(
        {"DEVSTACK_GATE_INSTALL_TESTONLY": "1"}, ["INSTALL_TESTONLY_PACKAGES=True"]
    ),
    "python3": Row({"DEVSTACK_GATE_USE_PYTHON3": "1"}, ["USE_PYTHON3=True"]),
    "project-from-git": Row(
        {"DEVSTACK_PROJECT_FROM_GIT": "oslo.config,oslo.messaging"},
        ["LIBS_FROM_GIT=oslo.config,oslo.messaging"],
    ),
    "base-directory": Row(
        {"BASE": "/srv/stack"},
        [
            "DEST=/srv/stack/new",
            "DATA_DIR=/srv/stack/data",
            "SCREEN_LOGDIR=/srv/stack/new/screen-logs",
            "LOGFILE=/srv/stack/new/devstacklog.txt",
            "LOGDIR=/srv/stack/new/logs",
        ],
        [
            "DEST=/opt/stack/new",
            "DATA_DIR=/opt/stack/data",
            "SCREEN_LOGDIR=/opt/stack/new/screen-logs",
            "LOGFILE=/opt/stack/new/devstacklog.txt",
            "LOGDIR=/opt/stack/new/logs",
        ],
    ),
    # -- what the wrap reads rather than devstack: local.conf is unchanged
    "timeout-from-the-build": Row(
        {"BUILD_TIMEOUT": "7200000"}, exported={"DEVSTACK_GATE_TIMEOUT": "110"}
    ),
    "timeout-buffer": Row(
        {"BUILD_TIMEOUT": "7200000", "DEVSTACK_GATE_TIMEOUT_BUFFER": "30"},
        exported={"DEVSTACK_GATE_TIMEOUT": "90"},
    ),
    # A short build keeps three quarters of its time.
    "timeout-of-a-short-build": Row(
        {"BUILD_TIMEOUT": "1200000"}, exported={"DEVSTACK_GATE_TIMEOUT": "15"}
    ),
    "timeout-given": Row(
        {"BUILD_TIMEOUT": "7200000", "DEVSTACK_GATE_TIMEOUT": "45"},
        exported={"DEVSTACK_GATE_TIMEOUT": "45"},
    ),
    "clean-logs-off": Row(
        {"DEVSTACK_GATE_CLEAN_LOGS": "0"}, exported={"DEVSTACK_GATE_CLEAN_LOGS": "0"}
    ),
    "keep-stack-sudo": Row(
        {"DEVSTACK_GATE_REMOVE_STACK_SUDO": "0"},
        exported={"DEVSTACK_GATE_REMOVE_STACK_SUDO": "0"},
    ),
    "unstack": Row({"DEVSTACK_GATE_UNSTACK": "1"}, exported={"DEVSTACK_GATE_UNSTACK": "1"}),
    # The workspace phase (functions.sh, dg_projects) prepares exactly these.
    "projects-override": Row(
        {"DEVSTACK_GATE_PROJECTS_OVERRIDE": "openstack-dev/devstack openstack/nova"},
        exported={"DEVSTACK_GATE_PROJECTS_OVERRIDE": "openstack-dev/devstack openstack/nova"},
    ),
    "tempest-concurrency": Row({"TEMPEST_CONCURRENCY": "2"}, exported={"TEMPEST_CONCURRENCY": "2"}),
}


def _services_changed(base: list[str], now: list[str]) -> tuple[list[str], list[str]]:
    return [s for s in now if s not in base], [s for s in base if s not in now]


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_each_switch_changes_the_config_as_devstack_gate_did(
    row: Row, baseline: Generated, tmp_path: Path
) -> None:
    got = generate(tmp_path, row.variables)

    added = Counter(got.lines) - Counter(baseline.lines)
    removed = Counter(baseline.lines) - Counter(got.lines)
    assert sorted(added.elements()) == sorted(row.added)
    assert sorted(removed.elements()) == sorted(row.removed)
    services_added, services_removed = _services_changed(baseline.services, got.services)
    assert sorted(services_added) == sorted(row.services_added)
    assert sorted(services_removed) == sorted(row.services_removed)
    assert got.tox == row.tox
    for name, value in row.exported.items():
        assert got.env[name] == value, name


def test_a_job_that_sets_nothing_gets_devstack_gates_defaults(baseline: Generated) -> None:
    env = baseline.env
    assert env["DEVSTACK_GATE_TEMPEST"] == "0"
    assert env["DEVSTACK_GATE_EXERCISES"] == "0"
    assert env["DEVSTACK_GATE_NEUTRON"] == "0"
    assert env["DEVSTACK_GATE_MQ_DRIVER"] == "rabbitmq"
    assert env["DEVSTACK_GATE_VIRT_DRIVER"] == "libvirt"
    assert env["DEVSTACK_GATE_TOPOLOGY"] == "aio"
    assert env["DEVSTACK_GATE_TIMEOUT"] == "60"
    assert env["DEVSTACK_GATE_TIMEOUT_BUFFER"] == "10"
    assert env["DEVSTACK_GATE_CLEAN_LOGS"] == "1"
    assert env["DEVSTACK_GATE_REMOVE_STACK_SUDO"] == "1"
    assert env["DEVSTACK_GATE_CONFIGDRIVE"] == "0"
    assert env["DEVSTACK_LOCAL_CONFIG"] == ""
    assert int(env["TEMPEST_CONCURRENCY"]) >= 1
    assert env["DEVSTACK_GATE_PROJECTS_OVERRIDE"] == ""
    # Every supported switch is exported, so reproduce.sh and the logs see it.
    switches = {name for name in env if name.startswith("DEVSTACK_GATE_")}
    assert len(switches) >= 30
    assert baseline.text.startswith("[[local|localrc]]\n")
    assert "ERROR_ON_CLONE=True" in baseline.lines
    assert "LOGFILE=/opt/stack/new/devstacklog.txt" in baseline.lines
    assert baseline.services[:3] == ["mysql", "rabbit", "dstat"] and "n-net" in baseline.services


def test_devstack_local_config_is_appended_verbatim_at_the_end_of_localrc(
    tmp_path: Path,
) -> None:
    # Quotes, a dollar devstack must expand itself, a backslash, and a
    # section of its own: none of it may be touched on the way.
    verbatim = (
        'DEBUG_LIBVIRT_COREDUMPS="True"\n'
        "NOVA_VNC_ENABLED=$ENABLE_VNC\n"
        "REGEX='^a\\.b$'\n"
        "[[post-config|$NOVA_CONF]]\n"
        "[DEFAULT]\n"
        "debug = True"
    )
    got = generate(
        tmp_path,
        {
            "DEVSTACK_LOCAL_CONFIG": verbatim,
            "DEVSTACK_GATE_TEMPEST": "1",
            "DEVSTACK_GATE_TEMPEST_DISABLE_TENANT_ISOLATION": "1",
        },
    )
    assert verbatim + "\n" in got.text
    localrc, _, rest = got.text.partition(verbatim)
    # After every generated localrc line (its settings win), before the
    # generated sections (which stay whole after the job's own).
    assert "FORCE_CONFIG_DRIVE=False" in localrc and "[[" not in localrc.split("\n", 1)[1]
    assert rest.lstrip("\n").startswith("[[test-config|$TEMPEST_CONFIG]]")


def test_a_switch_set_empty_gets_the_default_as_in_devstack_gate(
    baseline: Generated, tmp_path: Path
) -> None:
    # A job template that exported DEVSTACK_GATE_NEUTRON="" meant "off".
    empty = {"DEVSTACK_GATE_MQ_DRIVER": "", "DEVSTACK_GATE_CLEAN_LOGS": "", "BASE": ""}
    got = generate(tmp_path, {**empty, "DEVSTACK_GATE_NEUTRON": ""})
    assert got.text == baseline.text
    assert (got.env["DEVSTACK_GATE_MQ_DRIVER"], got.env["DEVSTACK_GATE_CLEAN_LOGS"]) == (
        "rabbitmq",
        "1",
    )


BAD = {
    "flag-not-0-or-1": (
        {"DEVSTACK_GATE_NEUTRON": "yes"},
        "DEVSTACK_GATE_NEUTRON must be 0 or 1, not 'yes'",
    ),
    "unknown-mq-driver": (
        {"DEVSTACK_GATE_MQ_DRIVER": "kafka"},
        "DEVSTACK_GATE_MQ_DRIVER must be one of: rabbitmq zeromq qpid; not 'kafka'",
    ),
    "unknown-virt-driver": (
        {"DEVSTACK_GATE_VIRT_DRIVER": "docker"},
        "DEVSTACK_GATE_VIRT_DRIVER must be one of: libvirt fake ironic xenapi openvz",
    ),
    "unknown-topology": (
        {"DEVSTACK_GATE_TOPOLOGY": "two"},
        "DEVSTACK_GATE_TOPOLOGY must be one of: aio multinode; not 'two'",
    ),
    "timeout-not-minutes": (
        {"DEVSTACK_GATE_TIMEOUT": "1h"},
        "DEVSTACK_GATE_TIMEOUT must be whole minutes, not '1h'",
    ),
    "build-timeout-not-milliseconds": (
        {"BUILD_TIMEOUT": "2h"},
        "BUILD_TIMEOUT must be milliseconds, not '2h'",
    ),
}


@pytest.mark.parametrize(("variables", "message"), BAD.values(), ids=BAD.keys())
def test_a_bad_value_is_refused_by_name_and_writes_no_local_conf(
    variables: dict[str, str], message: str, tmp_path: Path
) -> None:
    out = tmp_path / "devstack"
    out.mkdir()
    done = subprocess.run(
        ["bash", "-c", SCRIPT],
        env={"PATH": os.environ["PATH"], "KIT": str(LOCAL_CONF), "OUT": str(out), **variables},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert f"local-conf.sh: ERROR: {message}" in done.stderr
    assert not (out / "local.conf").exists()


def test_writing_into_a_directory_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", 'set -eu; source "$KIT"; dg_write_local_conf "$OUT/missing"'],
        env={"PATH": os.environ["PATH"], "KIT": str(LOCAL_CONF), "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert "needs the devstack directory" in done.stderr
