"""Project names and log globs: what Gerrit and the node would refuse is
refused by validate, and again where a name becomes a path at run time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gatekeeper.errors import TransportError, WorkspaceError
from gatekeeper.git.refs import check_project_name, project_dir
from gatekeeper.model.names import log_glob_problem, project_name_problem
from gatekeeper.node.rsync import check_patterns

pytestmark = pytest.mark.timeout(30)

LAYOUTS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "layouts"

REFUSED_NAMES = {
    "empty": "",
    "climbs out": "../../evil project",
    "dot-dot inside": "openstack/../../etc",
    "dot component": "openstack/./nova",
    "absolute": "/srv/git/nova",
    "trailing slash": "openstack/nova/",
    "double slash": "openstack//nova",
    "dot git suffix": "openstack/nova.git",
    "dot git inside": "openstack/nova.git/x",
    "backslash": "openstack\\nova",
    "colon": "openstack:nova",
    "star": "openstack/*",
    "dollar": "openstack/$HOME",
    "newline": "openstack/nova\nforged",
    "carriage return": "openstack/nova\r",
    "nul": "openstack/\0nova",
    "space": "evil project",
    "option": "-oProxyCommand=x",
    "hidden": "openstack/.ssh",
    "tilde": "~root/nova",
}

ACCEPTED_NAMES = ["openstack/nova", "openstack-infra/devstack-gate", "a", "x/y/z_1.2-3"]


@pytest.mark.parametrize("name", REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
def test_a_refused_project_name_is_refused_at_run_time_too(name: str) -> None:
    assert project_name_problem(name) is not None
    with pytest.raises(WorkspaceError) as info:
        check_project_name(name)
    # The name reaches the message escaped and short.
    assert "\n" not in str(info.value) and "\0" not in str(info.value)


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_ordinary_names_pass(name: str) -> None:
    assert project_name_problem(name) is None


@pytest.mark.parametrize(
    "layout", ["zuul-fixture-2012", "zuul-fixture-2017", "openstack-project-config-2015"]
)
def test_every_project_of_the_real_layouts_passes(layout: str) -> None:
    path = LAYOUTS / f"{layout}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared test data comes with the project workspace)")
    data = yaml.safe_load(path.read_text())
    names = [project["name"] for project in data.get("projects") or []]
    assert names
    assert {name: project_name_problem(name) for name in names if project_name_problem(name)} == {}
    globs = [glob for job in data.get("jobs") or [] for glob in job.get("logs") or []]
    assert [glob for glob in globs if log_glob_problem(glob)] == []


def test_a_project_directory_that_a_symlink_leads_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "merger"
    (root / "openstack").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "openstack" / "nova")
    assert project_dir(root, "openstack/glance") == root / "openstack" / "glance"
    with pytest.raises(WorkspaceError, match="leaves"):
        project_dir(root, "openstack/nova")


@pytest.mark.parametrize(
    "glob",
    ["../logs/**", "logs/../../x", "/etc/passwd", "~/.ssh/id_rsa", "", "- *", "!", "a\nb"],
)
def test_log_globs_that_leave_the_node_are_refused_by_rsync_too(glob: str) -> None:
    assert log_glob_problem(glob) is not None
    with pytest.raises(TransportError):
        check_patterns([glob])


@pytest.mark.parametrize("glob", ["logs/**", "*.txt", "logs/screen-*.log", "a/b/c", "x..y"])
def test_ordinary_log_globs_pass(glob: str) -> None:
    assert log_glob_problem(glob) is None
    assert check_patterns([glob]) == [glob]
