"""A run with an `align` section: heads trained on the catalogue, aligned features used by a model,
the heads kept in the bundle."""

from __future__ import annotations

import numpy as np
import pytest

import crossrec
from crossrec.experiment import run_experiment


@pytest.mark.slow
def test_a_run_trains_heads_feeds_models_and_bundles_the_heads(shared_data, tmp_path):
    config = {
        "name": "aligned",
        "output_dir": str(tmp_path),
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "encode": {
            "cache_dir": str(tmp_path / "cache"),
            "max_items": 300,
            "models": {"text": {"fields": ["title", "overview"]}, "image": None, "audio": None},
        },
        "align": {
            "pairs": [["text", "genres"]],
            "candidates": [{"anchor": "genres", "hidden": 64}],
            "epochs": 20,
        },
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [{"name": "contentknn", "params": {"feature": "text_shared"}}],
        "report": {"plots": False},
    }
    result = run_experiment(config, quiet=True)
    bundle = crossrec.load_bundle(result.bundle_dir)
    assert bundle.heads is not None and bundle.heads.anchor == "genres"
    shared = bundle.features["text_shared"]
    assert shared.present.sum() <= 300 and shared.present.sum() > 250
    # The bundled heads map a text vector to the feature the run used.
    row = int(np.flatnonzero(shared.present)[0])
    text = bundle.features["text"].matrix[row : row + 1]
    np.testing.assert_allclose(bundle.heads.transform("text", text)[0], shared.matrix[row], atol=1e-5)
