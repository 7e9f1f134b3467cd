"""Provider correlation on built datasets: a provider that really fails more
often is flagged, equal providers are flagged no more often than the stated
error level allows, and small samples are never flagged."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig
from gatekeeper.db.builds import BuildStore, RanOn
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import BuildRecord
from gatekeeper.insights.providers import (
    ALL_JOBS,
    ProviderWatch,
    correlate,
    provider_report,
)
from gatekeeper.insights.stats import Counts, holm, wilson_interval, worse_than_rest
from gatekeeper.model.node import NodeState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider

pytestmark = pytest.mark.timeout(30)

LEVEL = 0.05


def draw(rng: np.random.Generator, rates: dict[str, float], runs: int) -> dict[str, Counts]:
    """Each provider's failures in ``runs`` builds at its true failure rate."""
    return {p: Counts(int(rng.binomial(runs, rate)), runs) for p, rate in rates.items()}


def flagged(counts: dict[str, Counts], min_runs: int = 30) -> set[str]:
    overall, _ = correlate({("job", p): c for p, c in counts.items()}, LEVEL, min_runs)
    assert overall is not None
    return set(overall.flagged)


def test_a_provider_failing_three_times_as_often_is_flagged_with_realistic_counts() -> None:
    # 300 builds a week on each of three clouds; one fails 15% of the time, the others 5%.
    rng = np.random.default_rng(18)
    misses = 0
    for _ in range(20):
        counts = draw(rng, {"rax": 0.05, "ovh": 0.15, "vexxhost": 0.05}, 300)
        found = flagged(counts)
        assert found <= {"ovh"}, "a provider at the common rate was flagged"
        misses += "ovh" not in found
    # At these counts the test's power is close to 1: every draw flags it.
    assert misses == 0


def test_equal_rates_are_not_flagged_beyond_the_stated_error_rate() -> None:
    rng = np.random.default_rng(2026)
    draws = 200
    false_flags = sum(
        bool(flagged(draw(rng, {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}, 200)))
        for _ in range(draws)
    )
    # Holm keeps the chance of any flag in a draw at or below LEVEL, so the
    # draws with a flag are at most Binomial(200, 0.05); allow its 99.9th
    # percentile (about 21) so only a broken test or correction gets past.
    bound = scipy_stats.binom.ppf(0.999, draws, LEVEL)
    assert false_flags <= bound


def test_small_samples_are_never_flagged_however_bad_they_look() -> None:
    # 10 of 10 failed on one provider: striking, but below the minimum sample.
    counts = {"tiny": Counts(10, 10), "big": Counts(5, 500)}
    assert flagged(counts, min_runs=30) == set()
    assert worse_than_rest(counts, min_runs=30) == {}
    # With enough runs the same provider is flagged.
    assert flagged({"tiny": Counts(30, 30), "big": Counts(5, 500)}) == {"tiny"}


def test_a_lone_provider_has_nothing_to_be_compared_with() -> None:
    assert flagged({"only": Counts(90, 100)}) == set()


def test_holm_adjusts_in_order_and_never_lets_a_larger_p_value_win() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # Smallest times 3, next times 2 (0.06), the last times 1 but not below 0.06.
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({}) == {}


def test_the_wilson_interval_holds_the_rate_and_is_not_empty_at_zero_failures() -> None:
    low, high = wilson_interval(Counts(0, 50))
    assert low == pytest.approx(0.0, abs=1e-12) and 0.05 < high < 0.1
    low, high = wilson_interval(Counts(15, 100))
    assert low < 0.15 < high


def record(db: Database, job: str, provider: str, result: str, when: float) -> None:
    with db.session() as session:
        session.add(
            BuildRecord(
                uuid=uuid.uuid4().hex,
                job=job,
                pipeline="check",
                provider=provider,
                node=f"{provider}-node",
                worker="w",
                dispatched_at=when,
                result=result,
                log_url="",
            )
        )


def test_the_report_counts_verdicts_only_within_the_window(db: Database) -> None:
    now = 1_800_000_000.0
    for result in ("FAILURE", "TIMED_OUT", "SUCCESS", "NODE_FAILURE", "ABORTED", "ERROR"):
        record(db, "tempest", "rax", result, now - 3600)
    # Eight days old: outside the default week.
    record(db, "tempest", "rax", "FAILURE", now - 8 * 86400)
    # A build that never reached a node has no provider: not counted anywhere.
    record(db, "tempest", "", "FAILURE", now - 60)
    report = provider_report(db, days=7, now=now)
    assert report.overall is not None
    (row,) = report.overall.rows
    assert (row.provider, row.failures, row.runs) == ("rax", 2, 3)
    assert [t.job for t in report.jobs] == ["tempest"]
    assert provider_report(db, days=7, job="pep8", now=now).jobs == []


def test_the_watch_logs_a_newly_worse_provider_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1_800_000_000.0]
    for _ in range(40):
        record(db, "tempest", "bad", "SUCCESS", now[0] - 100)
        record(db, "tempest", "good", "SUCCESS", now[0] - 100)
    watch = ProviderWatch(db, min_runs=30, refresh=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="gatekeeper.insights.providers"):
        assert watch.flagged_providers() == set()
        # 'bad' starts failing half its builds.
        for i in range(40):
            record(db, "tempest", "bad", "FAILURE" if i % 2 else "SUCCESS", now[0] - 50)
        # Within the refresh interval the cached report stands.
        assert watch.flagged_providers() == set()
        now[0] += 120
        assert watch.flagged_providers() == {"bad"}
        now[0] += 120
        assert watch.flagged_providers() == {"bad"}
        # A second process (another watch on the same database) sees the
        # same state, and logs nothing: the first one did.
        assert ProviderWatch(db, min_runs=30, clock=lambda: now[0]).flagged_providers() == {"bad"}
        # The builds leave the window: the flag is cleared, once.
        now[0] += 8 * 86400
        assert watch.flagged_providers() == set()
        now[0] += 120
        assert watch.flagged_providers() == set()
    messages = [r.getMessage() for r in caplog.records]
    worse = [m for m in messages if m.startswith("provider bad is significantly worse for all")]
    assert len(worse) == 1 and "20 of 80 runs failed" in worse[0]
    assert len([m for m in messages if "no longer significantly worse for all jobs" in m]) == 1


def test_the_metrics_see_rates_and_flags_per_job_and_all_jobs(db: Database) -> None:
    for i in range(40):
        record(db, "tempest", "bad", "FAILURE" if i < 20 else "SUCCESS", time.time() - 100)
        record(db, "tempest", "good", "FAILURE" if i < 2 else "SUCCESS", time.time() - 100)
    rates = ProviderWatch(db, min_runs=30).rates()
    assert rates[(ALL_JOBS, "bad")] == (0.5, True)
    assert rates[("tempest", "good")] == (0.05, False)


# -- the pool's deprioritize-failing ------------------------------------------


def two_provider_pool(
    tmp_path: Path, db: Database, deprioritize: bool, east_servers: int = 4
) -> Pool:
    """East and west serve 'trusty' (4 ready wanted); west fails half its builds."""
    for i in range(40):
        record(db, "tempest", "west", "FAILURE" if i < 20 else "SUCCESS", time.time() - 100)
        record(db, "tempest", "east", "FAILURE" if i < 2 else "SUCCESS", time.time() - 100)
    providers = [
        ProviderConfig.model_validate(
            {"name": name, "driver": "local", "root": tmp_path / name, "max-servers": servers}
        )
        for name, servers in (("east", east_servers), ("west", 4))
    ]
    label = LabelConfig.model_validate(
        {"name": "trusty", "min-ready": 4, "deprioritize-failing": deprioritize}
    )
    site = SiteConfig(providers=providers, labels=[label])
    watch = ProviderWatch(db, min_runs=30)
    return Pool(site, db, {p.name: make_provider(p) for p in providers}, [label], watch=watch)


def placed(db: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in NodeStore(db).list():
        counts[node.provider] = counts.get(node.provider, 0) + 1
    return counts


def one_round(pool: Pool) -> None:
    try:
        pool.run_once()
        assert pool.wait_for_launches(timeout=30)
    finally:
        pool.stop()


def test_deprioritize_failing_keeps_a_label_off_the_flagged_provider(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gatekeeper.pool.pool"):
        one_round(two_provider_pool(tmp_path, db, deprioritize=True))
    assert placed(db) == {"east": 4}
    assert any(
        "label trusty: not launching on west" in r.getMessage()
        and "east can serve it" in r.getMessage()
        for r in caplog.records
    )


def test_without_deprioritize_failing_the_flagged_provider_still_gets_its_share(
    tmp_path: Path, db: Database
) -> None:
    one_round(two_provider_pool(tmp_path, db, deprioritize=False))
    assert placed(db) == {"east": 2, "west": 2}


def test_turning_it_on_takes_the_flagged_providers_ready_nodes_out(
    tmp_path: Path, db: Database
) -> None:
    pool = two_provider_pool(tmp_path, db, deprioritize=False)
    try:
        pool.run_once()
        assert pool.wait_for_launches(timeout=30)
        assert placed(db) == {"east": 2, "west": 2}
        [label] = pool.labels
        label.deprioritize_failing = True
        pool.run_once()
        assert pool.wait_for_launches(timeout=30)
    finally:
        pool.stop()
    # West's two READY nodes went to DELETE (and were deleted); east has the
    # four ready nodes the label wants.
    ready = {(n.provider, n.state) for n in NodeStore(db).list()}
    assert ready == {("east", NodeState.READY)}
    assert len(NodeStore(db).list("trusty", "east", NodeState.READY)) == 4


def test_the_flagged_provider_launches_again_while_the_others_back_off(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    pool = two_provider_pool(tmp_path, db, deprioritize=True)
    # East's launches have been failing: the pool holds them back for a while.
    pool.health["east"].backoff_until = time.time() + 600
    with caplog.at_level(logging.WARNING, logger="gatekeeper.pool.pool"):
        one_round(pool)
    assert placed(db) == {"west": 4}
    assert any(
        "launching on flagged west again: its other providers are backing off" in r.getMessage()
        for r in caplog.records
    )


# -- where a build ran --------------------------------------------------------


def test_the_build_row_keeps_where_it_ran_and_a_retry_forgets_it(db: Database) -> None:
    builds = BuildStore(db)
    builds.dispatched("b1", "tempest", "org/p", 1, 1, "check", time.time(), label="trusty")
    where = RanOn("RegionOne", "nova-az2", "trusty-east-20260101T000000-abcdef", 1_700_000_000.0)
    assert builds.worker_started("b1", "w1", "node-1", "east", 1_700_003_600.0, "u", where=where)
    record = builds.get("b1")
    assert record is not None
    assert (record.region, record.availability_zone, record.image, record.image_built_at) == (
        "RegionOne",
        "nova-az2",
        "trusty-east-20260101T000000-abcdef",
        1_700_000_000.0,
    )
    # The scheduler records the same start from the Gearman packet.
    builds.started("b1", "node-1", "east", "w1", 1_700_003_600.0, "u", where)
    assert builds.get("b1").region == "RegionOne"  # type: ignore[union-attr]
    # Run again elsewhere: nothing of the first node is left behind.
    builds.retried("b1", 2)
    record = builds.get("b1")
    assert record is not None and (record.region, record.image, record.image_built_at) == (
        "",
        "",
        None,
    )


# -- gatekeeper insights providers ----------------------------------------------


def test_the_command_prints_one_jobs_table_and_refuses_a_bad_window(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gatekeeper.cli import main

    db = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    db.migrate()
    for i in range(40):
        record(db, "tempest", "west", "FAILURE" if i < 20 else "SUCCESS", time.time() - 100)
        record(db, "tempest", "east", "FAILURE" if i < 2 else "SUCCESS", time.time() - 100)
        record(db, "pep8", "east", "SUCCESS", time.time() - 100)
    db.dispose()
    site = tmp_path / "gatekeeper.yaml"
    site.write_text(f"database: sqlite:///{tmp_path / 'gk.db'}\n")
    runner = CliRunner()
    result = runner.invoke(main, ["insights", "providers", "-c", str(site), "--job", "tempest"])
    assert result.exit_code == 0, result.output
    assert "all jobs" not in result.output and "pep8" not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "FLAGGED" in lines["west"] and "50.0%" in lines["west"] and " 40 " in lines["west"]
    assert "FLAGGED" not in lines["east"]
    refused = runner.invoke(main, ["insights", "providers", "-c", str(site), "--days", "0"])
    assert refused.exit_code == 2 and "--days" in refused.output
