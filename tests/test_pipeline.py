"""End to end on real data: movielens-small through split, models, evaluation and report."""

from __future__ import annotations

import json

import pytest

from crossrec.data.schema import Split
from crossrec.pipeline import run_experiment

pytestmark = pytest.mark.slow


def _config(shared_data, tmp_path):
    return {
        "name": "e2e",
        "output_dir": str(tmp_path),
        "seeds": [0, 1],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "temporal", "holdout": 0.2},
        "eval": {"ks": [10, 20], "diversity_features": "genres"},
        "models": [
            {"name": "mostpop"},
            {"name": "bpr", "params": {"epochs": 3, "embedding_dim": 32}},
            {"name": "lightgcn", "params": {"epochs": 3, "embedding_dim": 32}},
        ],
        "report": {"tensorboard": True},
    }


def test_run_writes_a_complete_reproducible_report(shared_data, tmp_path):
    run_experiment(_config(shared_data, tmp_path), quiet=True)
    run_dir = tmp_path / "e2e"
    for name in (
        "report.md",
        "metrics.json",
        "config.yaml",
        "split.npz",
        "training_curves.png",
        "metric_comparison.png",
    ):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))

    payload = json.loads((run_dir / "metrics.json").read_text())
    assert set(payload["models"]) == {"mostpop", "bpr", "lightgcn"}
    lightgcn = payload["models"]["lightgcn"]
    assert lightgcn["test"]["recall@20"]["n"] == 2
    assert 0 < lightgcn["test"]["recall@20"]["mean"] < 1
    for metric in (
        "ndcg@20",
        "precision@20",
        "map@20",
        "hit@20",
        "mrr@20",
        "coverage@20",
        "novelty@20",
        "diversity@20",
    ):
        assert metric in lightgcn["test"], metric
    assert payload["significance"]["better"] == payload["ranking_by_validation"][0]

    report = (run_dir / "report.md").read_text()
    assert "full ranking" in report and "masked" in report and "± " in report
    assert payload["significance_sentence"] in report

    saved = Split.load(run_dir / "split.npz")
    assert len(saved.test) == payload["split"]["test"]


def test_run_with_encoded_content_feeds_content_models(shared_data, tmp_path):
    config = {
        "name": "encoded",
        "output_dir": str(tmp_path),
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "encode": {
            "cache_dir": str(tmp_path / "cache"),
            "max_items": 24,
            "models": {"text": {"fields": ["title", "genres"]}, "image": {}, "audio": None},
        },
        "split": {"method": "random"},
        "eval": {"diversity_features": "text"},
        "models": [
            {"name": "contentknn", "label": "text", "params": {"feature": "text"}},
            {"name": "contentknn", "label": "poster", "params": {"feature": "image"}},
        ],
    }
    result = run_experiment(config, quiet=True)
    ingest = json.loads((tmp_path / "encoded" / "ingest_report.json").read_text())
    assert ingest["counts"]["text"]["items"] == 24
    for label in ("text", "poster"):
        assert result.payload["models"][label]["test"]["recall@20"]["mean"] > 0
    assert "diversity@20" in result.payload["models"]["text"]["test"]
    assert "encoded item content" in (tmp_path / "encoded" / "report.md").read_text()
