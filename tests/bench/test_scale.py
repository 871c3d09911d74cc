"""The scale benchmark's synthetic data and its cells, at a size that runs in seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(_BENCH))  # the cells run in spawned processes that import `scale` by name
_spec = importlib.util.spec_from_file_location("scale", _BENCH / "scale.py")
scale = importlib.util.module_from_spec(_spec)
sys.modules["scale"] = scale
_spec.loader.exec_module(scale)


def test_synthetic_interactions_are_power_law_distinct_and_hold_one_out_per_user():
    train, test = scale.interactions(5000, 5000)
    keys = train.user * 5000 + train.item
    assert len(np.unique(keys)) == len(keys)
    assert not set(keys) & set(test.user * 5000 + test.item)
    assert np.bincount(test.user, minlength=5000).max() == 1 and len(test) > 4900
    counts = np.sort(np.bincount(train.item, minlength=5000))[::-1]
    assert counts[:50].sum() > 0.1 * counts.sum()  # the top 1% of items: over a tenth of the data
    per_user = np.bincount(train.user, minlength=5000)
    assert 15 < per_user.mean() < 25 and per_user.min() >= 1


def test_a_cell_runs_in_its_own_process_and_reports_its_peak_memory():
    row = scale.run_cell(scale.cell_rank, 3000, "top-k")
    assert "error" not in row, row
    assert row["users_timed"] == row["users"] and not row["projected"]
    assert row["ms_per_user"] > 0 and row["peak_rss_mib"] > 50 and row["batch"] == 2048


def test_the_sampled_evaluation_is_timed_beside_the_per_user_cost():
    row = scale.run_cell(scale.cell_rank, 3000, "evaluate")
    assert "error" not in row, row
    assert row["sample_users"] == row["users"] and row["sample_s"] > 0  # fewer users than the sample


def test_batch_top_k_through_the_hnsw_index_finds_the_exact_lists():
    row = scale.run_cell(scale.cell_top_k_ann, 21_000)
    assert "error" not in row, row
    assert row["index"] == "hnsw" and row["users_timed"] == 2000 and row["projected"]
    assert row["recall@20_vs_exact"] > 0.95 and row["build_s"] > 0
