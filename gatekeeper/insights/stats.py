"""The statistics behind provider correlation: pure functions, no I/O.

Three choices, and why:

- **Wilson score interval** for a failure rate (``scipy.stats.binomtest``'s
  ``proportion_ci(method="wilson")``). Its coverage stays close to the
  stated level for the small counts and rates near 0 that CI failures have,
  where the textbook normal interval collapses to nothing at 0 failures;
  Clopper-Pearson guarantees coverage but is wider than it needs to be.
- **Fisher's exact test**, one-sided, on the 2x2 table (this provider's
  failures and passes against those of every other provider pooled). It
  is exact at any count, so a provider with 4 failures in 40 runs gets a
  true p-value rather than a chi-square approximation's guess; one-sided
  because only "worse" is acted on (a better provider is no alarm).
- **Holm-Bonferroni** over the family of comparisons made together. It
  keeps the chance of *any* false flag in the family at or below the level,
  whatever the dependence between the tests (they share data: each
  provider's runs are in every other provider's "rest"), and it rejects
  everything Bonferroni rejects and sometimes more.

A comparison is made only when both sides of the table have at least
``min_runs`` runs: small samples are never flagged, and, not being tested,
they do not dilute the correction for the others.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from scipy import stats as _scipy

K = TypeVar("K", bound=Hashable)

#: The family-wise error level a flag is raised at.
DEFAULT_LEVEL = 0.05
#: Runs a provider (and the rest, pooled) needs before it is compared.
DEFAULT_MIN_RUNS = 30


@dataclass(frozen=True)
class Counts:
    """Finished runs with a verdict, and how many of them failed."""

    failures: int
    runs: int

    @property
    def rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


def wilson_interval(counts: Counts, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the failure rate; (0, 1) with no runs."""
    if counts.runs == 0:
        return 0.0, 1.0
    ci = _scipy.binomtest(counts.failures, counts.runs).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(ci.low), float(ci.high)


def worse_p_value(this: Counts, rest: Counts) -> float:
    """One-sided Fisher exact p-value that ``this`` fails more often than ``rest``."""
    table = [
        [this.failures, this.runs - this.failures],
        [rest.failures, rest.runs - rest.failures],
    ]
    result = _scipy.fisher_exact(table, alternative="greater")
    return float(result.pvalue)


def worse_than_rest(counts: Mapping[K, Counts], min_runs: int = DEFAULT_MIN_RUNS) -> dict[K, float]:
    """Per key (a provider), the p-value that it fails more often than the
    other keys pooled; only keys where both sides have ``min_runs`` runs."""
    total = Counts(sum(c.failures for c in counts.values()), sum(c.runs for c in counts.values()))
    out: dict[K, float] = {}
    for key, this in counts.items():
        rest = Counts(total.failures - this.failures, total.runs - this.runs)
        if this.runs >= min_runs and rest.runs >= min_runs:
            out[key] = worse_p_value(this, rest)
    return out


def holm(p_values: Mapping[K, float]) -> dict[K, float]:
    """Holm-Bonferroni adjusted p-values: compare each with the level.

    The i-th smallest of m is multiplied by (m - i), made non-decreasing in
    that order (a larger raw p-value never gets a smaller adjusted one) and
    capped at 1.
    """
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(ordered)
    adjusted: dict[K, float] = {}
    running = 0.0
    for i, (key, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[key] = running
    return adjusted
