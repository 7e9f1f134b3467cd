"""Log directories, index pages and log URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.worker.archive import log_url, safe_log_dir, write_index

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
