"""What a job on the local provider can reach: real bubblewrap, real bash.

The provider lives under ``<tmp>/state/nodes`` as it does by default, with
a secret beside it in ``state/`` standing for the keys and the database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.node.transport import Transport
from gatekeeper.pool.providers.local import LocalProvider

pytestmark = pytest.mark.timeout(60)


def _node(provider: LocalProvider, name: str) -> Transport:
    launched = provider.launch(name, "label")
    return provider.transport(Node(name=name, external_id=launched.external_id))


def _run(transport: Transport, command: str) -> tuple[int, str]:
    lines: list[str] = []
    status = transport.run(command, {}, "workspace", lines.append, 30.0, threading.Event())
    return status, "\n".join(lines)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "secret.key").write_text("SECRET\n")
    return state


def _provider(state: Path, **keys: object) -> LocalProvider:
    config = ProviderConfig.model_validate(
        {"name": "local", "driver": "local", "root": state / "nodes", **keys}
    )
    provider = LocalProvider(config)
    assert provider.jail_problem == ""  # bubblewrap is installed (scripts/system-deps.sh)
    return provider


def test_job_writes_only_its_node(state: Path) -> None:
    transport = _node(_provider(state), "n1")
    planted = f"planted-{uuid.uuid4().hex}"  # a name nothing else uses
    status, out = _run(
        transport,
        f"echo hi > mine.txt && echo wrote-node; "
        f"echo x > '{state}/{planted}' || echo no-state; "
        f"touch /usr/{planted} || echo no-usr; touch /etc/{planted} || echo no-etc; "
        f"echo x > /tmp/{planted} && echo tmp-is-private",
    )
    assert status == 0, out
    marks = [line for line in out.split("\n") if ":" not in line]  # not the error messages
    assert marks == ["wrote-node", "no-state", "no-usr", "no-etc", "tmp-is-private"]
    assert (state / "nodes" / "n1" / "workspace" / "mine.txt").read_text() == "hi\n"
    assert not (state / planted).exists()
    assert not Path("/usr", planted).exists() and not Path("/etc", planted).exists()
    assert not Path("/tmp", planted).exists()


def test_job_sees_neither_state_nor_home_nor_other_nodes(state: Path) -> None:
    provider = _provider(state)
    other = _node(provider, "other")
    _run(other, "echo other-secret > note.txt")
    home = Path.home()
    status, out = _run(
        _node(provider, "n1"),
        f"cat '{state}/secret.key'; ls '{state}/nodes/other' '{home}'; "
        "cat /node/../other/workspace/note.txt; ls /; true",
    )
    assert status == 0
    assert "SECRET" not in out and "other-secret" not in out
    assert f"'{home}': No such file or directory" in out
    assert "node" in out.split("\n")  # `ls /`: the node is there...
    assert "work" not in out.split("\n") and "root" not in out.split("\n")  # ...not the host


def test_job_runs_as_an_unprivileged_uid(state: Path) -> None:
    status, out = _run(_node(_provider(state), "n1"), "id -u; id -g; id -G")
    assert status == 0
    uid, gid, groups = out.split("\n")
    assert uid == "65534" and gid == "65534" and groups == "65534"
    assert int(uid) != os.geteuid()


def test_job_uid_is_configurable_and_never_0(state: Path) -> None:
    status, out = _run(_node(_provider(state, **{"job-uid": 4242, "job-gid": 4243}), "n1"), "id -u")
    assert (status, out) == (0, "4242")
    with pytest.raises(ValueError, match="job-uid"):
        ProviderConfig.model_validate({"name": "l", "driver": "local", "job-uid": 0})


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize(
    "network, reached", [(True, True), (False, False)], ids=["network-on", "network-off"]
)
def test_network_per_provider(state: Path, listener: int, network: bool, reached: bool) -> None:
    transport = _node(_provider(state, network=network), "n1")
    status, out = _run(transport, f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo connected")
    assert ("connected" in out) is reached, out
    assert (status == 0) is reached


_AS_DAEMON = """
import sys
from pathlib import Path
from gatekeeper.node.confine import Jail
node = Path(sys.argv[1])
jail = Jail(uid=4242, gid=4242, network=False)
problem = jail.problem()
if problem:
    sys.exit("no jail: " + problem)
cmd = jail.argv(node, node, ["bash", "-c", "id -u > made-inside; touch /usr/x || echo ro"])
import subprocess
sys.exit(subprocess.run(cmd).returncode)
"""


@pytest.fixture
def daemon_home() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are root's alone (0700).
    with tempfile.TemporaryDirectory(prefix="gatekeeper-daemon-", dir="/tmp") as tmp:
        yield Path(tmp)


@pytest.mark.skipif(os.geteuid() != 0, reason="the tests above run this mode already")
def test_unprivileged_daemon_gets_a_user_namespace(daemon_home: Path) -> None:
    """A daemon that is not root: played by uid 65534 (the test runs as root),
    with the system python3, which that uid can run."""
    home = daemon_home
    node = home / "node"
    node.mkdir()
    for path in (home, node):
        os.chown(path, 65534, 65534)
    done = subprocess.run(
        ["/usr/bin/python3", "-c", _AS_DAEMON, str(node)],
        user=65534,
        group=65534,
        extra_groups=[],
        cwd=home,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ro"
    made = node / "made-inside"
    assert made.read_text() == "4242\n"
    # Outside, what the job made belongs to the daemon's uid: never root.
    assert made.stat().st_uid == 65534
