from __future__ import annotations

import numpy as np
import pytest

from crossrec.eval.stats import mean_std, paired_test


def test_mean_std_over_seeds():
    out = mean_std([{"recall@20": 0.1, "ndcg@20": 0.05}, {"recall@20": 0.2, "ndcg@20": 0.07}])
    assert out["recall@20"]["mean"] == pytest.approx(0.15)
    assert out["recall@20"]["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert mean_std([{"x": 3.0}])["x"] == {"mean": 3.0, "std": 0.0, "n": 1}


def test_paired_test_detects_a_real_gain_and_not_a_loss():
    rng = np.random.default_rng(0)
    base = rng.random(500)
    better = base + 0.05 + rng.normal(0, 0.02, 500)
    win = paired_test("ndcg@20", "A", better, "B", base)
    assert win.significant and win.p_value_t < 1e-6 and win.p_value_wilcoxon < 1e-6
    assert win.mean_difference == pytest.approx(np.mean(better - base))
    loss = paired_test("ndcg@20", "B", base, "A", better)
    assert not loss.significant and loss.p_value_t > 0.5
    assert "not significantly better" in loss.sentence()


def test_paired_test_on_identical_values_and_mismatched_users():
    values = np.linspace(0, 1, 20)
    same = paired_test("recall@20", "A", values, "B", values.copy())
    assert not same.significant and same.p_value_t == 1.0
    with pytest.raises(ValueError, match="same users"):
        paired_test("recall@20", "A", values, "B", values[:5])
