"""The site file: defaults, path resolution, and placed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.loader import load_site
from gatekeeper.errors import ConfigError


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    site = load_site(None, tmp_path)
    assert site.gerrit is None
    assert site.layout == tmp_path / "layout.yaml"
    assert site.state_dir == tmp_path / "state"
    assert site.database == f"sqlite:///{tmp_path / 'state' / 'gatekeeper.db'}"
    assert site.log_url.endswith("/")


def test_empty_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("")
    assert load_site(path, tmp_path).state_dir == tmp_path / "state"


def test_gerrit_paths_are_resolved(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        "gerrit:\n  host: review.example.org\n  user: gk\n  key: keys/id\nstate-dir: /srv/gk\n"
    )
    site = load_site(path, tmp_path)
    assert site.gerrit is not None
    assert site.gerrit.key == tmp_path / "keys" / "id"
    assert site.state_dir == Path("/srv/gk")


def test_unknown_key_is_placed_with_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("gerrit:\n  host: h\n  user: u\n  key: k\n  prot: 29418\n")
    with pytest.raises(ConfigError) as info:
        load_site(path, tmp_path)
    assert info.value.errors == [
        f"{path}:5: gerrit.prot: unknown key 'prot' (did you mean 'port'?)"
    ]


def test_nested_list_errors_are_placed(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        "providers:\n  - name: local\n  - name: cloud\n    driver: static\n"
        "    max-servers: many\n"
        "labels:\n  - name: devstack-vm\n    min-redy: 2\n"
    )
    with pytest.raises(ConfigError) as info:
        load_site(path, tmp_path)
    errors = info.value.errors
    assert f"{path}:5: providers[1].max-servers: " in errors[0]
    assert errors[-1] == (
        f"{path}:8: labels[0].min-redy: unknown key 'min-redy' (did you mean 'min-ready'?)"
    )


def test_model_validator_error_is_placed(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("providers:\n  - name: local\n  - name: hosts\n    driver: static\n")
    with pytest.raises(ConfigError) as info:
        load_site(path, tmp_path)
    assert info.value.errors == [
        f"{path}:3: providers[1]: a static provider needs at least one entry in 'hosts'"
    ]


def test_missing_required_and_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("gerrit:\n  host: h\n  key: k\n")
    with pytest.raises(ConfigError) as info:
        load_site(path, tmp_path)
    assert info.value.errors == [f"{path}:1: gerrit: missing required key 'user'"]
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_site(path, tmp_path)


def test_yaml_syntax_error_is_placed(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text("gerrit:\n  host: 'unterminated\n")
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: YAML syntax error: "):
        load_site(path, tmp_path)


def test_jail_keys_default_and_belong_to_the_local_driver(tmp_path: Path) -> None:
    [local] = load_site(None, tmp_path).providers
    assert (local.network, local.unconfined, local.job_uid, local.job_gid) == (
        True,
        False,
        65534,
        65534,
    )
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        "providers:\n  - name: s\n    driver: static\n    network: false\n"
        "    hosts:\n      - {name: h, host: h, username: u, private-key: k,"
        " known-hosts: kh, label: l}\n"
    )
    with pytest.raises(ConfigError, match="only for the local driver"):
        load_site(path, tmp_path)
