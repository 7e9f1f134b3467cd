"""Log retention: the reaper removes logs older than ``logs.keep-days``,
keeps newer ones, and never follows a symlink out of the log root."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.pool.reaper import Reaper
from gatekeeper.pool.retention import DAY, prune_logs

pytestmark = pytest.mark.timeout(30)

NOW = time.time()


def aged(path: Path, days: float) -> Path:
    when = NOW - days * DAY
    os.utime(path, (when, when), follow_symlinks=False)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    yield database
    database.dispose()


def layout(tmp_path: Path) -> tuple[Path, Path]:
    """An old build, a new build, and links out of the root (old themselves)
    to a directory full of old files that must survive."""
    root = tmp_path / "logs"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    aged(outside / "precious.txt", 90)
    old = root / "45/12345/1/check/job/aaaaaaa"
    new = root / "45/12345/2/check/job/bbbbbbb"
    for build in (old, new):
        (build / "logs").mkdir(parents=True)
        (build / "console.txt").write_text("x\n")
        (build / "logs" / "syslog.txt").write_text("y\n")
    os.symlink(outside, old / "to-outside")
    os.symlink(outside / "precious.txt", old / "file-link")
    os.symlink(outside, new / "new-link-out")
    for path in [old / "console.txt", old / "logs/syslog.txt", old / "logs", old]:
        aged(path, 40)
    for path in [old / "to-outside", old / "file-link", *old.parents[:3]]:
        aged(path, 40)
    aged(outside, 90)
    return root, outside


def test_old_logs_go_new_ones_stay_links_are_not_followed(tmp_path: Path) -> None:
    root, outside = layout(tmp_path)
    pruned = prune_logs(root, 30, NOW)
    assert not (root / "45/12345/1").exists()
    assert (root / "45/12345/2/check/job/bbbbbbb/logs/syslog.txt").exists()
    assert (outside / "precious.txt").read_text() == "keep me"
    assert (root / "45/12345/2/check/job/bbbbbbb/new-link-out").is_symlink()
    assert root.is_dir()
    # console, syslog and the two links; logs/, the build's dir, job/, check/, 1/.
    assert (pruned.files, pruned.directories) == (4, 5)


def test_zero_keeps_everything(tmp_path: Path) -> None:
    root, _ = layout(tmp_path)
    assert prune_logs(root, 0, NOW).files == 0
    assert (root / "45/12345/1/check/job/aaaaaaa/console.txt").exists()


def test_the_reaper_prunes_logs_when_keep_days_is_set(tmp_path: Path, db: Database) -> None:
    root, outside = layout(tmp_path)
    site = SiteConfig.model_validate({"log-root": root, "logs": {"keep-days": 30}})
    site.resolve(tmp_path)
    reaper = Reaper(site, NodeStore(db), ImageStore(db), {})
    done = reaper.run_once(now=NOW)
    assert done["logs"] == 9
    assert not (root / "45/12345/1").exists()
    assert (root / "45/12345/2/check/job/bbbbbbb/console.txt").exists()
    assert (outside / "precious.txt").exists()
