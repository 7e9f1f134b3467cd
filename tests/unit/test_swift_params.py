"""A job's ``swift:`` targets become signed Swift FormPost parameters.

Each test recomputes what Swift's formpost middleware would: the HMAC-SHA1
of the HMAC body with the account's key must equal the signature, and the
body must name the URL's path, the limits and the expiry the build was given.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.site import SiteConfig, SwiftConfig
from gatekeeper.errors import ConfigError
from gatekeeper.model.change import Change
from gatekeeper.scheduler.params import build_params, swift_params
from gatekeeper.scheduler.swift import SwiftSigner, unsigned_targets

pytestmark = pytest.mark.timeout(30)

KEY = "s3cr3t-temp-url-key"
NOW = 1_700_000_000.0
CHANGE = Change("openstack/nova", "master", 123456, 3, ref="refs/changes/56/123456/3")

# OpenStack's 2015 form: every job gets 'logs'; one job adds its own target
# and overrides 'logs' with the underscore spellings Zuul v2.5 still read.
LAYOUT = """
pipelines:
  - name: check
    manager: independent
jobs:
  - name: ^.*$
    swift:
      - name: logs
  - name: docs
    swift:
      - name: logs
        max_file_size: 2048
        logserver_prefix: "http://logs.example.org/{pipeline.name}/"
      - name: artifacts
        container: "art-{job.name}"
        expiry: 60
        max-file-count: 3
projects:
  - name: openstack/nova
    check: [docs, unit]
"""


def site_swift(**extra: object) -> SwiftConfig:
    data = {
        "storage-url": "https://swift.example.org/v1/AUTH_ci/",
        "temp-url-key": KEY,
        "default-container": "logs",
        "default-logserver-prefix": "http://logs.example.org/",
        **extra,
    }
    return SwiftConfig.model_validate(data)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    path = tmp_path / "layout.yaml"
    path.write_text(LAYOUT)
    return load_layout(path)


def params_for(layout: Layout, job: str, config: SwiftConfig | None = None) -> dict[str, str]:
    signer = SwiftSigner(config or site_swift(), KEY, clock=lambda: NOW)
    params = build_params(CHANGE, [], "check", job, "f" * 32, "ssh://gerrit")
    params.update(swift_params(signer, layout.job(job), CHANGE, "check", params))
    return params


def verify(params: dict[str, str], name: str, key: str = KEY) -> list[str]:
    """The formpost middleware's check, redone: the body lines, after the
    signature was found to be the body's HMAC-SHA1 under ``key``."""
    prefix = f"SWIFT_{name}_"
    body = params[prefix + "HMAC_BODY"]
    expected = hmac.new(key.encode(), body.encode(), hashlib.sha1).hexdigest()
    assert hmac.compare_digest(params[prefix + "SIGNATURE"], expected)
    path, redirect, size, count, expires = body.split("\n")
    assert path == urlsplit(params[prefix + "URL"]).path
    assert redirect == ""
    assert (size, count, expires) == (
        params[prefix + "MAX_FILE_SIZE"],
        params[prefix + "MAX_FILE_COUNT"],
        params[prefix + "EXPIRY"],
    )
    return [path, size, count, expires]


def test_every_job_gets_the_site_defaults(layout: Layout) -> None:
    params = params_for(layout, "unit")
    log_path = params["LOG_PATH"]
    assert params["SWIFT_logs_URL"] == f"https://swift.example.org/v1/AUTH_ci/logs/{log_path}"
    assert verify(params, "logs") == [
        f"/v1/AUTH_ci/logs/{log_path}",
        "104857600",  # Zuul v2.5's defaults: 100 MiB, 10 files, 2 hours
        "10",
        str(int(NOW) + 7200),
    ]
    assert params["SWIFT_logs_LOGSERVER_PREFIX"] == "http://logs.example.org/"
    assert params["SWIFT_logs_CONTAINER"] == "logs"
    assert not any(k.startswith("SWIFT_artifacts_") for k in params)


def test_a_job_overrides_a_target_and_adds_its_own(layout: Layout) -> None:
    params = params_for(layout, "docs")
    log_path = params["LOG_PATH"]
    assert verify(params, "logs")[1:3] == ["2048", "10"]
    assert params["SWIFT_logs_LOGSERVER_PREFIX"] == "http://logs.example.org/check/"
    assert verify(params, "artifacts") == [
        f"/v1/AUTH_ci/art-docs/{log_path}",
        "104857600",
        "3",
        str(int(NOW) + 60),
    ]
    assert params["SWIFT_artifacts_CONTAINER"] == "art-docs"


def test_another_key_does_not_verify(layout: Layout) -> None:
    params = params_for(layout, "unit")
    with pytest.raises(AssertionError):
        verify(params, "logs", key="not-the-key")


def test_the_file_path_prefix_goes_between_container_and_log_path(layout: Layout) -> None:
    config = site_swift(**{"default-file-path-prefix": "/ci/", "default-expiry": "1h"})
    params = params_for(layout, "unit", config)
    path = verify(params, "logs")[0]
    assert path == f"/v1/AUTH_ci/logs/ci/{params['LOG_PATH']}"
    assert params["SWIFT_logs_EXPIRY"] == str(int(NOW) + 3600)


def test_the_key_is_read_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "swift.key").write_text(KEY + "\n")
    site = SiteConfig.model_validate(
        {"swift": {"storage-url": "https://s/v1/AUTH_x", "temp-url-key-file": "swift.key"}}
    ).resolve(tmp_path)
    assert site.swift is not None
    signer = SwiftSigner.from_config(site.swift)
    assert signer.sign("body") == hmac.new(KEY.encode(), b"body", hashlib.sha1).hexdigest()
    assert "s3cr3t" not in repr(site.swift)


@pytest.mark.parametrize(
    "swift",
    [
        {"storage-url": "https://s/v1/AUTH_x"},
        {"storage-url": "https://s/v1/AUTH_x", "temp-url-key": "k", "temp-url-key-file": "f"},
    ],
    ids=["no-key", "two-keys"],
)
def test_the_site_needs_exactly_one_key(swift: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="one of 'temp-url-key' and 'temp-url-key-file'"):
        SiteConfig.model_validate({"swift": swift})


def test_a_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    config = SwiftConfig.model_validate(
        {"storage-url": "https://s/v1/AUTH_x", "temp-url-key-file": str(tmp_path / "nope")}
    )
    with pytest.raises(ConfigError, match=r"swift\.temp-url-key-file: No such file"):
        SwiftSigner.from_config(config)


def test_without_a_site_section_the_targets_are_named(layout: Layout) -> None:
    """The daemon logs these lines when it loads such a layout."""
    lines = unsigned_targets(layout)
    assert lines == [
        f"{layout.file}:7: jobs[0].swift: the site has no 'swift:' section: builds of "
        "'^.*$' get no SWIFT_* parameters for logs",
        f"{layout.file}:10: jobs[1].swift: the site has no 'swift:' section: builds of "
        "'docs' get no SWIFT_* parameters for logs, artifacts",
    ]


def test_validate_with_a_site_warns_of_unsigned_targets(layout: Layout, tmp_path: Path) -> None:
    """``gatekeeper validate -c``: a warning per entry, and the layout is still OK."""
    without = tmp_path / "without.yaml"
    without.write_text("state-dir: state\n")
    with_swift = tmp_path / "with.yaml"
    with_swift.write_text(f"swift:\n  storage-url: https://s/v1/AUTH_x\n  temp-url-key: {KEY}\n")
    runs = {
        site.name: CliRunner().invoke(main, ["validate", str(layout.file), "-c", str(site)])
        for site in (without, with_swift)
    }
    assert [r.exit_code for r in runs.values()] == [0, 0]
    warned = runs["without.yaml"].stderr.splitlines()
    assert warned == [f"warning: {line}" for line in unsigned_targets(layout)]
    assert "warning" not in runs["with.yaml"].stderr
    assert ": OK (" in runs["with.yaml"].stdout
