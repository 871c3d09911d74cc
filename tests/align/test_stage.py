"""The align stage: heads chosen on held-out pairs, aligned features handed on, heads in the bundle."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.align import paired_recall
from crossrec.align.stage import AlignConfig, HeadsCandidate, align_features
from crossrec.data.features import ItemFeatures
from crossrec.errors import ConfigError


def _views(n: int = 500, seed: int = 0) -> dict[str, ItemFeatures]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    image = z @ rng.normal(size=(8, 40)) + 0.3 * rng.normal(size=(n, 40))
    text = z @ rng.normal(size=(8, 24)) + 0.3 * rng.normal(size=(n, 24))
    present = np.ones(n, dtype=bool)
    present[:30] = False  # no poster for these items
    return {
        "image": ItemFeatures(image.astype(np.float32), present, "img-enc"),
        "text": ItemFeatures(text.astype(np.float32), np.ones(n, dtype=bool), "txt-enc"),
    }


def test_the_best_candidate_by_held_out_recall_is_kept_and_features_are_aligned():
    features = _views()
    config = AlignConfig(
        pairs=[("image", "text")],
        candidates=[HeadsCandidate(anchor="text", hidden=0), HeadsCandidate(hidden=0, dim=1)],
        epochs=60,
        patience=10,
        lr=5e-3,
    )
    result = align_features(features, config)
    scores = [c["valid_recall@10"] for c in result.candidates]
    assert result.chosen == int(np.argmax(scores)) == 0  # a 1-d space cannot hold the items apart
    image, text = result.features["image_shared"], result.features["text_shared"]
    assert image.present.tolist() == features["image"].present.tolist()
    assert not image.matrix[:30].any() and image.source == "shared-space:image"
    rows = np.arange(30, 500)
    recall = paired_recall(text.matrix[rows], image.matrix[rows], ks=(10,))["recall@10"]
    assert (
        recall
        > 5
        * paired_recall(features["text"].matrix[rows, :24], features["image"].matrix[rows, :24], ks=(10,))[
            "recall@10"
        ]
    )


def test_missing_inputs_are_named():
    with pytest.raises(
        ConfigError, match="modality 'audio' needs item features audio; the run has: image, text"
    ):
        align_features(_views(), AlignConfig(pairs=[("audio", "text")]))
