"""LocalTransport and SSHTransport against real rsync, bash and sshd."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gatekeeper.errors import TransportError
from gatekeeper.node.transport import CommandAborted, CommandTimedOut, Transport
from gatekeeper.node.transport_local import LocalTransport
from gatekeeper.node.transport_ssh import SSHTransport
from tests.fixtures.sshd import SSHServer

HOSTILE = {
    "SUBST": "$(touch /tmp/gatekeeper-pwned)",
    "QUOTES": 'it\'s "quoted" `id` \\ ;',
    "NEWLINES": "line one\nline two\n",
    "EMPTY": "",
}


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    (ws / "nova").mkdir(parents=True)
    (ws / "nova" / "setup.py").write_text("print('nova')\n")
    (ws / "run.sh").write_text("#!/bin/bash\necho hello from $(basename $PWD)\n")
    return ws


def _run(transport: Transport, command: str, **kwargs: object) -> tuple[int, list[str]]:
    lines: list[str] = []
    env = kwargs.pop("env", {})
    status = transport.run(
        command,
        env=env,  # type: ignore[arg-type]
        cwd=str(kwargs.pop("cwd", "workspace")),
        on_output=lines.append,
        timeout=float(kwargs.pop("timeout", 30)),  # type: ignore[arg-type]
        stop=kwargs.pop("stop", threading.Event()),  # type: ignore[arg-type]
    )
    return status, lines


# -- local ---------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalTransport:
    root = tmp_path / "node"
    root.mkdir()
    return LocalTransport(root, None)


def test_local_push_mirrors_with_deletes(local: LocalTransport, tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    (local.root / "workspace").mkdir()
    (local.root / "workspace" / "stale.txt").write_text("old")
    local.push(ws, "workspace")
    assert (local.root / "workspace" / "nova" / "setup.py").read_text() == "print('nova')\n"
    assert not (local.root / "workspace" / "stale.txt").exists()


def test_local_run_env_cwd_and_exit_status(local: LocalTransport, tmp_path: Path) -> None:
    local.push(_workspace(tmp_path), "workspace")
    status, lines = _run(
        local,
        'bash run.sh; echo "$SUBST|$QUOTES"; echo "$NEWLINES" | wc -l;'
        " echo home=$HOME tmp=$TMPDIR; echo err >&2; exit 3",
        env=HOSTILE,
    )
    assert status == 3
    assert lines[0] == "hello from workspace"
    assert lines[1] == HOSTILE["SUBST"] + "|" + HOSTILE["QUOTES"]
    assert lines[2].strip() == "3"
    assert lines[3] == f"home={local.root} tmp={local.root / 'tmp'}"
    assert lines[4] == "err"
    assert not Path("/tmp/gatekeeper-pwned").exists()


def test_local_run_has_clean_environment(
    local: LocalTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_SECRET", "do-not-leak")
    _status, lines = _run(local, "env", cwd="")
    names = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert "GATEKEEPER_SECRET" not in names
    assert {"PATH", "HOME", "TMPDIR"} <= names


def test_local_output_is_streamed(local: LocalTransport) -> None:
    # The command waits for a file that only on_output creates: this ends
    # only if the first line arrives while the command is still running.
    lines: list[str] = []

    def on_output(line: str) -> None:
        lines.append(line)
        if line == "waiting":
            (local.root / "go").touch()

    status = local.run(
        "echo waiting; while [ ! -e $HOME/go ]; do sleep 0.01; done; echo done",
        env={},
        cwd="",
        on_output=on_output,
        timeout=20,
        stop=threading.Event(),
    )
    assert status == 0 and lines == ["waiting", "done"]


def test_local_timeout_kills_process_group(local: LocalTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimedOut):
        _run(local, "sleep 60 & echo $! > child.pid; sleep 60", cwd="", timeout=0.5)
    assert time.monotonic() - started < 10
    child = int((local.root / "child.pid").read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_local_abort(local: LocalTransport) -> None:
    stop = threading.Event()

    def on_output(line: str) -> None:
        if line == "started":
            stop.set()

    with pytest.raises(CommandAborted):
        local.run(
            "echo started; sleep 60",
            env={},
            cwd="",
            on_output=on_output,
            timeout=30,
            stop=stop,
        )


def test_local_pull_patterns_and_no_symlinks(local: LocalTransport, tmp_path: Path) -> None:
    logs = local.root / "workspace" / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "a.txt").write_text("a")
    (logs / "sub" / "b.txt").write_text("b")
    (logs / "passwd").symlink_to("/etc/passwd")
    (logs / "etc").symlink_to("/etc")
    (local.root / "workspace" / "screen-n-api.txt").write_text("api")
    (local.root / "workspace" / "secret.key").write_text("no")
    dest = tmp_path / "collected"

    copied = local.pull("workspace", ["logs/**", "screen-*.txt"], dest).files

    assert sorted(p.relative_to(dest).as_posix() for p in copied) == [
        "logs/a.txt",
        "logs/sub/b.txt",
        "screen-n-api.txt",
    ]
    assert not (dest / "logs" / "passwd").exists()
    assert not (dest / "logs" / "etc").exists()
    assert not (dest / "secret.key").exists()


@pytest.mark.parametrize(
    "patterns, remote",
    [
        pytest.param(["../**"], "workspace", id="dotdot-pattern"),
        pytest.param(["logs/../../etc/*"], "workspace", id="dotdot-inside"),
        pytest.param(["+ /etc/**"], "workspace", id="rule-prefix"),
        pytest.param(["logs/**"], "../..", id="dotdot-dir"),
        pytest.param(["logs/**"], "/etc", id="absolute-dir"),
    ],
)
def test_local_pull_refuses_escapes(
    local: LocalTransport, tmp_path: Path, patterns: list[str], remote: str
) -> None:
    with pytest.raises(TransportError):
        local.pull(remote, patterns, tmp_path / "out")


def test_local_refuses_symlinked_dir_out_of_root(local: LocalTransport, tmp_path: Path) -> None:
    (local.root / "escape").symlink_to(tmp_path)
    with pytest.raises(TransportError):
        local.pull("escape", ["**"], tmp_path / "out")
    with pytest.raises(TransportError):
        _run(local, "true", cwd="escape")


def test_local_clean(local: LocalTransport, tmp_path: Path) -> None:
    local.push(_workspace(tmp_path), "workspace")
    (local.root / "ro").mkdir()
    (local.root / "ro" / "f").write_text("x")
    (local.root / "ro").chmod(0o500)
    local.clean()
    assert list(local.root.iterdir()) == []


# -- ssh -----------------------------------------------------------------


@pytest.fixture
def ssh(sshd: SSHServer, tmp_path: Path) -> SSHTransport:
    return SSHTransport(
        sshd.host,
        sshd.port,
        sshd.username,
        sshd.private_key,
        sshd.known_hosts,
        root=str(tmp_path / "remote" / "node-1"),
    )


@pytest.mark.sshd
def test_ssh_push_run_pull(ssh: SSHTransport, tmp_path: Path) -> None:
    ssh.push(_workspace(tmp_path), "workspace")
    remote = Path(ssh.root)
    assert (remote / "workspace" / "nova" / "setup.py").exists()

    status, lines = _run(ssh, "bash run.sh; mkdir -p logs; echo log > logs/x.txt; exit 4")
    assert status == 4
    assert lines == ["hello from workspace"]

    (remote / "workspace" / "logs" / "passwd").symlink_to("/etc/passwd")
    dest = tmp_path / "collected"
    copied = ssh.pull("workspace", ["logs/**"], dest).files
    assert [p.relative_to(dest).as_posix() for p in copied] == ["logs/x.txt"]
    assert not (dest / "logs" / "passwd").exists()

    ssh.clean()
    assert remote.is_dir() and list(remote.iterdir()) == []


@pytest.mark.sshd
def test_ssh_env_values_arrive_literally(ssh: SSHTransport) -> None:
    status, lines = _run(
        ssh,
        'printf "%s|" "$SUBST" "$QUOTES" "$EMPTY"; printf "%s" "$NEWLINES" | wc -l',
        env=HOSTILE,
    )
    assert status == 0
    assert lines[0] == f"{HOSTILE['SUBST']}|{HOSTILE['QUOTES']}||2"
    assert not Path("/tmp/gatekeeper-pwned").exists()


@pytest.mark.sshd
def test_ssh_rejects_bad_env_name(ssh: SSHTransport) -> None:
    with pytest.raises(TransportError):
        _run(ssh, "true", env={"A;touch /tmp/x;B": "1"})


@pytest.mark.sshd
def test_ssh_timeout_kills_remote_command(ssh: SSHTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimedOut):
        _run(ssh, "echo $$ > pid; sleep 60", timeout=1)
    assert time.monotonic() - started < 15
    pid = int((Path(ssh.root) / "workspace" / "pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.sshd
def test_ssh_abort(ssh: SSHTransport) -> None:
    stop = threading.Event()

    def on_output(line: str) -> None:
        if line == "started":
            stop.set()

    with pytest.raises(CommandAborted):
        ssh.run("echo started; sleep 60", {}, "", on_output, 30, stop)


@pytest.mark.sshd
def test_ssh_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    transport = SSHTransport(
        sshd.host, sshd.port, sshd.username, sshd.private_key, empty, str(tmp_path / "r")
    )
    with pytest.raises(TransportError):
        _run(transport, "true")
    with pytest.raises(TransportError):
        transport.push(tmp_path, "x")


@pytest.mark.sshd
def test_ssh_pull_takes_regular_files_under_the_cap(ssh: SSHTransport, tmp_path: Path) -> None:
    ssh.push(_workspace(tmp_path), "workspace")
    logs = Path(ssh.root) / "workspace" / "logs"
    logs.mkdir()
    (logs / "small.txt").write_text("small\n")
    (logs / "big.txt").write_bytes(b"x" * 100)
    os.mkfifo(logs / "fifo")
    (logs / "etc").symlink_to("/etc")
    dest = tmp_path / "collected"

    pulled = ssh.pull("workspace", ["logs/**"], dest, max_bytes=50)

    assert [p.relative_to(dest).as_posix() for p in pulled.files] == ["logs/small.txt"]
    assert sorted(p.name for p in (dest / "logs").iterdir()) == ["small.txt"]
