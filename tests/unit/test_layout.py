"""layout.yaml: the repository's own, the Zuul fixtures, OpenStack's 2015 layout, and errors."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from gatekeeper.config import yamlmarks
from gatekeeper.config.layout import load_layout, validate_layout_file
from gatekeeper.config.layout_schema import JobTree
from gatekeeper.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LAYOUTS = REPO.parent / "shared" / "testdata" / "layouts"

EIGHT = [
    "openstack/nova",
    "openstack/glance",
    "openstack/keystone",
    "openstack/horizon",
    "openstack/python-novaclient",
    "openstack/python-keystoneclient",
    "openstack-dev/devstack",
    "openstack-infra/devstack-gate",
]


@pytest.fixture
def shared_layouts() -> Path:
    if not LAYOUTS.is_dir():
        pytest.skip(f"{LAYOUTS} is absent (shared test data comes with the project workspace)")
    return LAYOUTS


def write(tmp_path: Path, text: str, name: str = "layout.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


MINIMAL = """\
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
"""


def test_repository_layout_loads_with_eight_projects() -> None:
    layout = load_layout(REPO / "layout.yaml")
    assert layout.project_names == EIGHT
    assert [p.name for p in layout.pipelines] == ["check", "gate"]
    check, gate = layout.pipeline("check"), layout.pipeline("gate")
    assert check.manager == "independent" and gate.manager == "dependent"
    assert gate.precedence == "high" and gate.window == 20 and gate.window_floor == 3
    assert gate.require.open is True and gate.require.current_patchset is True
    assert [r.labels for r in gate.require.approval] == [{"code-review": [2]}, {"workflow": [1]}]
    assert gate.trigger.gerrit[0].approval == [{"workflow": 1}]
    assert gate.success is not None and gate.success.votes == {"verified": 2}
    assert gate.success.submit is True
    assert gate.start is not None and gate.start.gerrit == {"verified": 0}
    assert check.failure is not None and check.failure.votes == {"verified": -1}
    recheck = check.trigger.gerrit[1].comment[0]
    assert recheck.search("Patch Set 2:\n\nrecheck")
    assert recheck.search("Patch Set 2: Code-Review+1\n\nrecheck bug 123")
    assert not recheck.search("Patch Set 2:\n\nlooks good")
    for project in EIGHT:
        for pipeline in ("check", "gate"):
            assert layout.jobs_for(project, pipeline) == [JobTree("gate-devstack-vm")]
    job = layout.job("gate-devstack-vm")
    assert job.node == "devstack-vm" and job.timeout == 3600 and job.logs == ["logs/**"]
    assert job.run.splitlines() == [
        "export DEVSTACK_GATE_EXERCISES=1",
        'bash "$WORKSPACE/.gatekeeper/kit/devstack-gate/devstack-vm-gate-wrap.sh"',
    ]
    assert layout.projects_for_job("gate-devstack-vm") == EIGHT
    assert layout.all_job_names() == ["gate-devstack-vm"]


def test_zuul_2017_fixture_loads_without_includes(shared_layouts: Path) -> None:
    path = shared_layouts / "zuul-fixture-2017.yaml"
    errors = validate_layout_file(path, includes=True)
    assert len(errors) == 1 and "custom_functions.py" in errors[0]
    layout = load_layout(path, includes=False)
    assert layout.pipeline("gate").manager == "dependent"
    assert layout.pipeline("unused").dequeue_on_new_patchset is False
    assert layout.project("org/project") is not None
    assert layout.project("org/project").merge_mode == "cherry-pick"  # type: ignore[union-attr]
    trees = layout.jobs_for("org/project", "check")
    assert [t.name for t in trees] == ["project-merge"]
    assert [c.name for c in trees[0].children] == [
        "project-test1",
        "project-test2",
        "project-testfile",
    ]
    merge = layout.job("project1-merge")
    # The regex entry applies first, then the literal one adds its tags.
    assert merge.hold_following_changes is True
    assert merge.tags == ["merge", "project1", "extratag"]
    assert layout.job("mutex-one").mutex == "test-mutex"
    assert layout.job("nonvoting-project-test2").voting is False
    assert layout.job("project1-project2-integration").queue_name == "integration"
    assert layout.projects_for_job("project1-project2-integration") == [
        "org/project1",
        "org/project2",
        "org/project3",
    ]
    assert layout.job("project-testfile").files_match(["x-requires"])
    assert not layout.job("project-testfile").files_match(["README"])


def test_zuul_2012_fixture_loads_with_warnings(
    shared_layouts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper.config.layout")
    layout = load_layout(shared_layouts / "zuul-fixture-2012.yaml")
    assert [p.name for p in layout.pipelines] == ["check", "post", "gate"]
    check = layout.pipeline("check")
    assert check.manager == "independent"
    assert check.trigger.gerrit[0].event[0].pattern == "patchset-created"
    assert check.success is not None and check.success.votes == {"verified": 1}
    gate = layout.pipeline("gate")
    assert gate.manager == "dependent" and gate.success is not None and gate.success.submit
    assert gate.trigger.gerrit[0].approval == [{"approved": 1}]
    assert layout.job("project-merge").failure_message == "Unable to merge change"
    text = caplog.text
    for modern in ("pipelines", "IndependentPipelineManager", "patchset-created", "gerrit:"):
        assert modern in text
    assert "zuul-fixture-2012.yaml:1:" in text


def test_openstack_2015_layout(shared_layouts: Path) -> None:
    path = shared_layouts / "openstack-project-config-2015.yaml"
    with pytest.raises(ConfigError) as info:
        load_layout(path)
    message = str(info.value)
    assert "openstack_functions.py" in message
    assert "gatekeeper validate --no-includes" in message
    assert message.startswith(f"{path}:2: includes[0].python-file:")

    layout = load_layout(path, includes=False)
    assert len(layout.projects) == 804
    assert len(layout.pipelines) == 15
    assert layout.pipeline("periodic").trigger.timer[0].time == "0 6 * * *"
    merge_check = layout.pipeline("merge-check")
    assert merge_check.trigger.zuul[0].event[0].pattern == "project-change-merged"
    assert merge_check.merge_failure is not None
    stable = layout.pipeline("periodic-stable")
    assert stable.failure is not None and stable.failure.smtp is not None
    assert stable.failure.smtp.to == "openstack-stable-maint@lists.openstack.org"
    names = [t.name for t in layout.jobs_for("openstack/nova", "check")]
    assert "gate-nova-python27" in names and "gate-nova-pep8" in names
    nova = layout.job("gate-nova-python27")
    assert nova.parameter_function == "set_node_options"
    assert layout.projects_for_job("gate-nova-python27") == ["openstack/nova"]
    assert len(layout.all_job_names()) > 1000


def test_template_params_and_children(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
project-templates:
  - name: py
    check:
      - 'gate-{name}-merge':
        - 'gate-{name}-{python}'
projects:
  - name: org/thing
    template:
      - name: py
        python: py27
    check:
      - gate-thing-merge:
        - extra
""",
    )
    layout = load_layout(path)
    assert layout.jobs_for("org/thing", "check") == [
        JobTree("gate-thing-merge", [JobTree("gate-thing-py27"), JobTree("extra")])
    ]
    assert layout.jobs_for("org/thing", "gate") == []
    assert layout.jobs_for("org/other", "check") == []


def test_unknown_key_names_line_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
pipelines:
  - name: check
    manager: independent
    trigerr:
      gerrit:
        - event: patchset-created
""",
    )
    errors = validate_layout_file(path)
    assert errors == [
        f"{path}:4: pipelines[0].trigerr: unknown key 'trigerr' (did you mean 'trigger'?)"
    ]


def test_unknown_pipeline_in_project(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "projects:\n  - name: org/a\n    chek:\n      - foo\n")
    (error,) = validate_layout_file(path)
    assert error.startswith(f"{path}:9: projects[0].chek: unknown")
    assert "did you mean 'check'?" in error


def test_broken_regex_names_line_and_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - workflow: 1
          comment: '(unclosed'
jobs:
  - name: ^bad(
""",
    )
    errors = validate_layout_file(path)
    assert len(errors) == 2
    assert errors[0].startswith(f"{path}:9: pipelines[0].trigger.gerrit[0].comment: ")
    assert "(unclosed" in errors[0]
    assert errors[1].startswith(f"{path}:11: jobs[0].name: invalid regular expression")


def test_bad_values_are_placed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
pipelines:
  - name: gate
    manager: dependent
    precedence: urgent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - workflow: x
    success:
      gerrit:
        verified: lots
  - name: other
    manager: SomethingManager
""",
    )
    errors = validate_layout_file(path)
    assert [e.split(": ")[0:2] for e in errors] == [
        [f"{path}:4", "pipelines[0].precedence"],
        [f"{path}:9", "pipelines[0].trigger.gerrit[0].approval[0].workflow"],
        [f"{path}:12", "pipelines[0].success.gerrit.verified"],
        [f"{path}:14", "pipelines[1].manager"],
    ]


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "pipelines:\n  - name: check\n")
    assert validate_layout_file(path) == [f"{path}:2: pipelines[0]: missing required key 'manager'"]


def test_duplicate_names_report_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
  - name: check
    manager: independent
jobs:
  - name: foo
  - name: foo
projects:
  - name: org/a
  - name: org/a
""",
    )
    errors = validate_layout_file(path)
    assert errors == [
        f"{path}:7: pipelines[1].name: duplicate pipeline 'check' (first defined at line 2)",
        f"{path}:11: jobs[1].name: duplicate job 'foo' (first defined at line 10)",
        f"{path}:14: projects[1].name: duplicate project 'org/a' (first defined at line 13)",
    ]


def test_duplicate_yaml_key_reports_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "pipelines: []\njobs: []\npipelines: []\n")
    with pytest.raises(ConfigError) as info:
        load_layout(path)
    assert info.value.errors == [f"{path}:3: duplicate key 'pipelines' (first defined at line 1)"]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "pipelines:\n  - name: [check\n    manager: x\n")
    (error,) = validate_layout_file(path)
    assert error.startswith(f"{path}:3: YAML syntax error:")


def test_missing_template_param(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
project-templates:
  - name: py
    check:
      - 'gate-{name}-{python}'
projects:
  - name: org/thing
    template:
      - name: py
""",
    )
    errors = validate_layout_file(path)
    assert errors == [
        f"{path}:14: projects[0].template[0]: project-template 'py' needs parameter"
        " 'python', which project 'org/thing' does not give"
    ]


def test_unknown_template(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL + "project-templates:\n  - name: python-jobs\n"
        "projects:\n  - name: org/a\n    template:\n      - name: python-job\n",
    )
    (error,) = validate_layout_file(path)
    assert error.startswith(f"{path}:12: projects[0].template[0].name: unknown project-template")
    assert "did you mean 'python-jobs'?" in error


def test_includes_are_loaded(tmp_path: Path) -> None:
    (tmp_path / "funcs.py").write_text("def set_node(item, job, params):\n    params['X'] = '1'\n")
    path = write(
        tmp_path,
        "includes:\n  - python-file: funcs.py\n" + MINIMAL + "jobs:\n  - name: a\n"
        "    parameter-function: set_node\n  - name: b\n    parameter-function: set_nod\n",
    )
    errors = validate_layout_file(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:13: jobs[1].parameter-function: unknown function")
    assert "did you mean 'set_node'?" in errors[0]
    assert validate_layout_file(path, includes=False) == []
    (tmp_path / "funcs.py").write_text(
        "def set_node(item, job, params):\n    pass\ndef set_nod(item, job, params):\n    pass\n"
    )
    layout = load_layout(path)
    params: dict[str, str] = {}
    layout.functions["set_node"](None, None, params)
    assert sorted(layout.functions) == ["set_nod", "set_node"]


def test_regex_jobs_apply_in_file_order_then_literal(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
jobs:
  - name: unit
    voting: true
    timeout: 60
  - name: ^.*$
    voting: false
    node: small
  - name: ^un.*$
    node: big
    branch: ^master$
""",
    )
    layout = load_layout(path)
    unit = layout.job("unit")
    assert (unit.voting, unit.node, unit.timeout) == (True, "big", 60)
    assert unit.branch_matches("master") and not unit.branch_matches("stable/x")
    other = layout.job("other")
    assert (other.voting, other.node, other.timeout, other.attempts) == (False, "small", 0, 3)


def test_empty_layout_is_empty(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, ""))
    assert layout.pipelines == [] and layout.all_job_names() == []


def test_marks_record_keys_and_items(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\n  - x: 1\n    y:\n      - 2\n      - 3\n")
    data, marks = yamlmarks.load(path)
    assert data == {"a": [{"x": 1, "y": [2, 3]}]}
    assert marks[("a",)] == 1
    assert marks[("a", 0)] == 2
    assert marks[("a", 0, "y")] == 3
    assert marks[("a", 0, "y", 1)] == 5
