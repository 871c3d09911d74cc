from __future__ import annotations

import numpy as np
import pytest

from crossrec.align import LabelBridge, SharedSpace, paired_recall, precision_at_k


def _paired_views(n: int = 600, seed: int = 0):
    """Two 'modalities' that are different noisy linear views of one latent item vector."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    image = z @ rng.normal(size=(8, 40)) + 0.3 * rng.normal(size=(n, 40))
    text = z @ rng.normal(size=(8, 24)) + 0.3 * rng.normal(size=(n, 24))
    return image.astype(np.float32), text.astype(np.float32)


def test_paired_recall_and_precision_by_hand():
    gallery = np.eye(3, dtype=np.float32)
    queries = np.array([[1, 0, 0], [0, 0.2, 1], [0, 0, 1]], dtype=np.float32)
    # query 1's partner (row 1) ranks second, behind row 2.
    assert paired_recall(queries, gallery, ks=(1, 2)) == {"recall@1": pytest.approx(2 / 3), "recall@2": 1.0}
    relevant = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    assert precision_at_k(queries, gallery, relevant, k=1).tolist() == [1.0, 0.0, 1.0]


def test_heads_align_two_views_far_above_chance_and_survive_save_load(tmp_path):
    image, text = _paired_views()
    held_out = slice(500, 600)
    space = SharedSpace(dim=16, hidden=0, epochs=60, patience=10, batch_size=128, lr=5e-3, seed=0)
    space.fit({"image": image[:500], "text": text[:500]}, pairs=[("image", "text")])
    q = space.transform("text", text[held_out])
    g = space.transform("image", image[held_out])
    recall = paired_recall(q, g, ks=(1, 10))
    assert recall["recall@10"] > 0.5  # chance is 0.10 among 100 items
    raw = paired_recall(text[held_out, :24], image[held_out, :24], ks=(10,))
    assert recall["recall@10"] > raw["recall@10"]
    loaded = SharedSpace.load(space.save(tmp_path / "space.pt"))
    np.testing.assert_allclose(loaded.transform("image", image[held_out]), g, atol=1e-6)


def test_anchor_modality_is_kept_and_missing_rows_are_skipped():
    image, text = _paired_views(seed=1)
    image[:50] = np.nan  # these items have no image: they must not break training
    space = SharedSpace(anchor="text", hidden=32, epochs=30, batch_size=128, lr=5e-3, seed=0)
    space.fit({"image": image, "text": text}, pairs=[("image", "text")])
    assert space.dim == text.shape[1]
    out = space.transform("text", text[:5])
    np.testing.assert_allclose(out, text[:5] / np.linalg.norm(text[:5], axis=1, keepdims=True), atol=1e-6)
    assert np.isfinite(space.transform("image", image[60:70])).all()
    with pytest.raises(KeyError, match="audio"):
        space.transform("audio", image[:2])


def test_label_bridge_maps_probabilities_to_label_text_space():
    label_vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    bridge = LabelBridge(label_vectors, top_k=1)
    out = bridge.transform(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32))
    np.testing.assert_allclose(out, [[1, 0], [np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        bridge.transform(np.ones((1, 4), dtype=np.float32))
