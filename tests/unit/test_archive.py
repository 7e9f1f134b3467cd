"""Log directories, index pages and log URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.errors import TransportError
from gatekeeper.node.transport_local import LocalTransport
from gatekeeper.worker.archive import log_url, safe_log_dir, vet, write_index

pytestmark = pytest.mark.timeout(30)


def test_safe_log_dir_accepts_zuul_layout(tmp_path: Path) -> None:
    path = "01/1/1/check/devstack-gate/abcdef0"
    assert safe_log_dir(tmp_path, path) == tmp_path.resolve() / path


@pytest.mark.parametrize(
    "log_path",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "",
        ".",
        "a/./b",
        "a b",
        "a/b\n",
        "x/..",
        "a\\..\\b",
    ],
    ids=[
        "dotdot",
        "inner",
        "absolute",
        "empty-part",
        "empty",
        "dot",
        "inner-dot",
        "space",
        "newline",
        "trailing",
        "backslash",
    ],
)
def test_safe_log_dir_refuses_traversal(tmp_path: Path, log_path: str) -> None:
    with pytest.raises(ValueError):
        safe_log_dir(tmp_path, log_path)


def test_safe_log_dir_refuses_symlink_out(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError):
        safe_log_dir(root, "link/escape")


def test_index_escapes_hostile_names(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "<script>alert(1)<\\script>.txt").write_text("x" * 2048)
    (tmp_path / '"><img src=x onerror=alert(1)>').write_text("")
    (tmp_path / "javascript:alert(1)").write_text("")
    (tmp_path / "sub dir" / "nested.txt").write_text("n")
    (tmp_path / os.fsdecode(b"bad\xffbytes")).write_text("")
    write_index(tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;\\script&gt;.txt" in page
    assert 'href="%3Cscript%3Ealert%281%29%3C%5Cscript%3E.txt"' in page
    assert "<img" not in page
    assert 'href="javascript%3Aalert%281%29"' in page
    assert 'href="sub%20dir/"' in page
    assert 'href="bad%FFbytes"' in page
    assert "2.0K" in page
    assert "../" not in page
    nested = (tmp_path / "sub dir" / "index.html").read_text()
    assert 'href="nested.txt"' in nested
    assert 'href="../"' in nested
    assert "index.html" not in nested.split("<table>")[1]


def test_index_replaces_symlinked_index(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "index.html").symlink_to(target)
    write_index(logs)
    assert target.read_text() == "keep"
    assert not (logs / "index.html").is_symlink()


def test_log_url() -> None:
    assert log_url("http://logs.example.org/", "01/1/1/check/job/abc") == (
        "http://logs.example.org/01/1/1/check/job/abc/"
    )
    assert log_url("file:///srv/logs", "a/b") == "file:///srv/logs/a/b/"


# -- what the archive takes ----------------------------------------------


def _hostile_logs(logs: Path, outside: Path) -> None:
    """A log directory as a job could leave it: one good file and every
    kind of thing the archive must not take."""
    logs.mkdir(parents=True)
    (logs / "a-good.txt").write_text("good\n")
    (logs / "b-big.txt").write_bytes(b"x" * 100)
    (logs / "c-after-cap.txt").write_text("late\n")
    outside.write_text("SECRET KEY MATERIAL\n")
    os.link(outside, logs / "hardlink.key")
    (logs / "symlink.key").symlink_to(outside)
    os.mkfifo(logs / "fifo")


def test_pull_takes_only_regular_files_with_one_name_up_to_the_cap(tmp_path: Path) -> None:
    node = tmp_path / "node"
    _hostile_logs(node / "workspace" / "logs", tmp_path / "outside.key")
    dest = tmp_path / "archive"

    pulled = LocalTransport(node, None).pull("workspace", ["logs/**"], dest, max_bytes=50)

    taken = sorted(p.relative_to(dest).as_posix() for p in pulled.files)
    assert taken == ["logs/a-good.txt", "logs/b-big.txt"]
    assert (dest / "logs" / "a-good.txt").read_text() == "good\n"
    assert (dest / "logs" / "b-big.txt").read_bytes() == b"x" * 45  # 50 - len("good\n")
    notes = "\n".join(pulled.refused)
    assert "logs/hardlink.key: a hard link (2 names" in notes
    assert "logs/symlink.key: a symlink" in notes
    assert "logs/fifo: not a regular file" in notes
    assert "logs/b-big.txt: cut at 45 of 100 bytes" in notes
    assert "logs/c-after-cap.txt: over the log size cap" in notes
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert on_disk == ["logs", "logs/a-good.txt", "logs/b-big.txt"]
    for path in dest.rglob("*"):
        assert path.is_dir() or b"SECRET" not in path.read_bytes()


def test_vet_removes_what_an_archive_may_not_hold(tmp_path: Path) -> None:
    """The check made after every copy, whatever made it (rsync from an SSH
    node runs as the node's user)."""
    log_dir = tmp_path / "build"
    _hostile_logs(log_dir / "logs", tmp_path / "outside.key")
    (log_dir / "logs" / "linked-dir").symlink_to(tmp_path)
    (log_dir / "console.txt").write_text("c" * 1000)

    notes = vet(log_dir, max_bytes=50, keep={"console.txt"})

    remaining = sorted(p.relative_to(log_dir).as_posix() for p in log_dir.rglob("*"))
    assert remaining == ["console.txt", "logs", "logs/a-good.txt", "logs/b-big.txt"]
    assert (log_dir / "logs" / "b-big.txt").stat().st_size == 45
    assert (log_dir / "console.txt").stat().st_size == 1000  # ours: not counted, not cut
    assert outside_intact(tmp_path / "outside.key")
    joined = "\n".join(notes)
    for name in ("hardlink.key", "symlink.key", "fifo", "linked-dir", "c-after-cap.txt"):
        assert f"logs/{name}: " in joined
    assert "logs/b-big.txt: cut at 45 of 100 bytes" in joined


def outside_intact(path: Path) -> bool:
    return path.read_text() == "SECRET KEY MATERIAL\n"


@pytest.mark.parametrize(
    "pattern", ["/etc/**", "../logs/**", "logs/../../x"], ids=["absolute", "dotdot", "inner"]
)
def test_pull_refuses_patterns_that_leave_the_node(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "node" / "workspace").mkdir(parents=True)
    with pytest.raises(TransportError, match="bad log pattern"):
        LocalTransport(tmp_path / "node", None).pull("workspace", [pattern], tmp_path / "out")
