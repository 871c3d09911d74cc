"""One small real bundle for the serving tests: movielens-small, WordLlama text (fast), a shared
text-genre space, and an AlphaRec-like model (folds in histories, maps new content)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrec.experiment import load_bundle, run_experiment


@pytest.fixture(scope="session")
def bundle_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve-run")
    config = {
        "name": "served",
        "output_dir": str(out),
        "seeds": [0],
        "dataset": {
            "format": "movielens",
            "path": str(shared_data / "movielens-small"),
            "options": {"posters": False},
        },
        "encode": {
            "cache_dir": str(out / "cache"),
            "models": {
                "text": {
                    "model": "wordllama-l2-supercat-256",
                    "fields": ["title", "genres", "tags", "overview"],
                },
                "image": None,
                "audio": None,
            },
        },
        "align": {
            "pairs": [["text", "genres"]],
            "candidates": [{"anchor": "genres", "hidden": 64}],
            "epochs": 30,
        },
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [
            {
                "name": "alpharec",
                "params": {
                    "embedding_dim": 32,
                    "hidden_dim": 64,
                    "modalities": ["text", "genres"],
                    "n_negatives": 16,
                    "epochs": 6,
                    "lr": 2e-3,
                },
            }
        ],
        "report": {"plots": False},
    }
    result = run_experiment(config, quiet=True)
    assert result.bundle_dir is not None
    return result.bundle_dir


@pytest.fixture(scope="session")
def bundle(bundle_dir: Path):
    return load_bundle(bundle_dir)
