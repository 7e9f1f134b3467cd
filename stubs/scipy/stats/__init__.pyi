# The parts of scipy.stats gatekeeper uses (gatekeeper.insights.stats).
from collections.abc import Sequence
from typing import Literal

_Alternative = Literal["two-sided", "less", "greater"]

class ConfidenceInterval:
    low: float
    high: float

class BinomTestResult:
    k: int
    n: int
    pvalue: float
    def proportion_ci(
        self,
        confidence_level: float = ...,
        method: Literal["exact", "wilson", "wilsoncc"] = ...,
    ) -> ConfidenceInterval: ...

def binomtest(
    k: int, n: int, p: float = ..., alternative: _Alternative = ...
) -> BinomTestResult: ...

class SignificanceResult:
    statistic: float
    pvalue: float

def fisher_exact(
    table: Sequence[Sequence[int]], alternative: _Alternative = ...
) -> SignificanceResult: ...
