"""`crossrec serve` without --model serves the best model by validation that can be served."""

from __future__ import annotations

import pytest

from crossrec.errors import ConfigError
from crossrec.experiment import run_experiment
from crossrec.serve.state import ServingState, load_servable

pytestmark = pytest.mark.slow


def test_the_best_servable_model_is_chosen_when_the_best_cannot_be_served(shared_data, tmp_path):
    config = {
        "name": "mixed",
        "output_dir": str(tmp_path),
        "dataset": {
            "format": "movielens",
            "path": str(shared_data / "movielens-small"),
            "options": {"posters": False},
        },
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [
            {"name": "itemknn", "params": {"k": 50}},
            {"name": "mostpop"},
            {"name": "bpr", "params": {"epochs": 1, "embedding_dim": 8}},
        ],
        "report": {"plots": False},
    }
    result = run_experiment(config, quiet=True)
    assert result.summary.ranking_by_validation[0] == "itemknn"  # the best, but it has no vectors
    bundle = load_servable(result.bundle_dir)
    assert bundle.label == "bpr"
    assert ServingState(bundle).recommend(str(bundle.user_ids[0]), 5)
    with pytest.raises(ConfigError, match="ItemKNN does not score by dot products"):
        ServingState(load_servable(result.bundle_dir, "itemknn"))
