"""Loading the site's known-failure signatures: what a good file gives, and
the error, naming file, line and key, that each kind of bad one gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.errors import ConfigError
from gatekeeper.insights.signatures import glob_regex, load_signature, load_signatures

pytestmark = pytest.mark.timeout(10)

GOOD = """\
id: nova-libvirt-eof
description: libvirt closed the connection under nova-compute
bug: https://bugs.launchpad.net/nova/+bug/1643911
files:
  - logs/screen-n-cpu.txt*
patterns:
  - 'libvirtError: End of file while reading data'
  - '^.*Connection to libvirt lost'
job: ^gate-tempest-dsvm-
project: ^openstack/nova$
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_a_good_signature_loads_with_its_filters(tmp_path: Path) -> None:
    signature = load_signature(write(tmp_path, "eof.yaml", GOOD))
    assert signature.id == "nova-libvirt-eof"
    assert signature.files == ["logs/screen-n-cpu.txt*"]
    assert len(signature.patterns) == 2
    assert signature.looks_at("logs/screen-n-cpu.txt.gz")
    assert not signature.looks_at("console.txt")
    assert signature.applies_to("gate-tempest-dsvm-full", "openstack/nova", "master")
    assert not signature.applies_to("gate-nova-python27", "openstack/nova", "master")
    assert not signature.applies_to("gate-tempest-dsvm-full", "openstack/novaclient", "master")


def test_files_default_to_the_console(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "id: c\ndescription: d\npatterns: [x]\n")
    assert load_signature(path).files == ["console.txt"]


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("logs/screen-*.txt*", "logs/screen-n-cpu.txt.gz", True),
        ("logs/screen-*.txt*", "logs/old/screen-n-cpu.txt", False),
        ("logs/**/syslog.txt", "logs/a/b/syslog.txt", True),
        ("logs/**/syslog.txt", "logs/syslog.txt", True),
        ("console.txt", "logs/console.txt", False),
        ("logs/n-?pu.txt", "logs/n-cpu.txt", True),
    ],
    ids=["star", "star-stays-in-dir", "double-star", "double-star-none", "exact", "question"],
)
def test_file_globs(glob: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(glob).match(path)) is matches


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            GOOD.replace("'^.*Connection to libvirt lost'", "'(unclosed'"),
            "eof.yaml:8: patterns[1]: not an RE2 expression: missing ): (unclosed",
        ),
        (
            # A look-ahead is Python's, not RE2's: RE2 refuses what it cannot run in linear time.
            GOOD.replace("'^.*Connection to libvirt lost'", "'lost(?=connection)'"),
            "eof.yaml:8: patterns[1]: not an RE2 expression: invalid perl operator: (?=",
        ),
        (
            GOOD.replace("project: ^openstack/nova$", "project: '[z-a]'"),
            "eof.yaml:10: project: not an RE2 expression: invalid character class range: z-a",
        ),
        (
            GOOD.replace("'^.*Connection to libvirt lost'", "'\\Alost'"),
            "eof.yaml:8: patterns[1]: \\A and \\z are not for one line: use ^ and $",
        ),
        (
            GOOD.replace(
                "patterns:\n  - 'libvirtError: End of file while reading data'\n", ""
            ).replace("  - '^.*Connection to libvirt lost'\n", ""),
            "eof.yaml:1: missing required key 'patterns'",
        ),
        (
            GOOD.replace("files:", "file:"),
            "eof.yaml:4: file: unknown key 'file' (did you mean 'files'?)",
        ),
        (
            GOOD.replace("  - logs/screen-n-cpu.txt*", "  - ../../etc/passwd"),
            "eof.yaml:5: files[0]: '../../etc/passwd'",
        ),
        (
            GOOD.replace("https://bugs", "javascript:bugs"),
            "eof.yaml:3: bug: String should match pattern",
        ),
        ("- just\n- a list\n", "eof.yaml:1: a signature must be a mapping"),
    ],
    ids=[
        "bad-re2",
        "python-only-syntax",
        "bad-filter",
        "text-anchor",
        "no-patterns",
        "misspelt-key",
        "escaping-glob",
        "bug-not-a-link",
        "not-a-mapping",
    ],
)
def test_a_bad_signature_names_file_line_and_key(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, "eof.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_signature(path)
    assert any(line.startswith(f"{tmp_path}/{error}") for line in caught.value.errors), (
        caught.value.errors
    )


def test_a_directory_loads_every_file_and_reports_every_problem(tmp_path: Path) -> None:
    failures = tmp_path / "failures"
    write(failures, "a.yaml", GOOD)
    write(failures, "b.yaml", GOOD.replace("job:", "jbo:"))
    write(failures, "c.yaml", GOOD)  # the same id again
    write(failures, "notes.txt", "not a signature: only *.yaml are read\n")
    with pytest.raises(ConfigError) as caught:
        load_signatures(failures)
    errors = caught.value.errors
    assert any(e.startswith(f"{failures}/b.yaml:9: jbo: unknown key 'jbo'") for e in errors), errors
    assert any(
        e.startswith(f"{failures}/c.yaml:1: id: 'nova-libvirt-eof' is already the id of")
        for e in errors
    ), errors

    (failures / "b.yaml").unlink()
    (failures / "c.yaml").unlink()
    assert [s.id for s in load_signatures(failures)] == ["nova-libvirt-eof"]


def test_no_directory_is_no_signatures(tmp_path: Path) -> None:
    assert len(load_signatures(tmp_path / "failures")) == 0
