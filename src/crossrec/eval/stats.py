"""Across seeds and across models: mean and spread, and whether a difference is more than noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def mean_std(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample standard deviation over seeds (std 0 for a single seed)."""
    names = sorted(set().union(*runs)) if runs else []
    out = {}
    for name in names:
        values = np.array([r[name] for r in runs if name in r], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return out


@dataclass(frozen=True)
class PairedTest:
    """Two models' per-user values of one metric on the same users."""

    metric: str
    better: str
    worse: str
    n_users: int
    mean_difference: float
    t_statistic: float
    p_value_t: float
    p_value_wilcoxon: float
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.p_value_t < self.alpha and self.mean_difference > 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "significant": self.significant}

    def sentence(self) -> str:
        verdict = "significantly better than" if self.significant else "not significantly better than"
        return (
            f"{self.better} is {verdict} {self.worse} on {self.metric} "
            f"(mean per-user difference {self.mean_difference:+.4f} over {self.n_users} users; "
            f"paired t-test p = {self.p_value_t:.3g}, Wilcoxon signed-rank p = {self.p_value_wilcoxon:.3g})."
        )


def paired_test(
    metric: str, better: str, a: np.ndarray, worse: str, b: np.ndarray, alpha: float = 0.05
) -> PairedTest:
    """One-sided: does `better` (values `a`) beat `worse` (values `b`) user by user?"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired values must cover the same users")
    diff = a - b
    if np.allclose(diff, 0):
        t, p_t, p_w = 0.0, 1.0, 1.0
    else:
        t, p_t = stats.ttest_rel(a, b, alternative="greater")
        p_w = stats.wilcoxon(a, b, alternative="greater", zero_method="zsplit").pvalue
    return PairedTest(
        metric, better, worse, len(a), float(diff.mean()), float(t), float(p_t), float(p_w), alpha
    )
