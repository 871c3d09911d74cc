"""The content models on a real TikTok slice with its image and audio features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrec.data.schema import Interactions, Split
from crossrec.errors import ConfigError
from crossrec.eval.ranking import evaluator_for
from crossrec.models import BM3, BPRMF, FREEDOM, VBPR, AlphaRec, NeuralRecommender, Recommender

FAST = {"embedding_dim": 32, "batch_size": 1024}


def _zoo() -> dict[str, NeuralRecommender]:
    return {
        "vbpr": VBPR(**FAST, lr=1e-2, reg_weight=1e-2, epochs=20),
        "freedom": FREEDOM(**FAST, lr=1e-2, edge_keep=0.5, modality_loss_weight=0.1, epochs=20),
        "freedom-shared-softmax": FREEDOM(
            **FAST,
            lr=1e-2,
            loss="softmax",
            n_negatives=128,
            shared_negatives=True,
            temperature=0.2,
            modality_loss_weight=0.1,
            epochs=20,
        ),
        "bm3": BM3(**FAST, lr=1e-3, epochs=20),
        "alpharec": AlphaRec(**FAST, hidden_dim=32, lr=1e-3, n_negatives=8, epochs=20),
    }


@pytest.mark.parametrize("name", list(_zoo()))
def test_learns_far_beyond_chance(
    name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]
) -> None:
    split, model = tiktok_slice, _zoo()[name]
    model.eval_every, model.patience = 4, 2
    model.fit(split.train, tiktok_features, valid=evaluator_for(split.valid, split.train))
    test = evaluator_for(split.test, split.train, split.valid)(model)
    assert test["recall@20"] > 4 * (20 / split.n_items), test


@pytest.mark.parametrize("name", list(_zoo()))
def test_seeded_and_saved(
    name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray], tmp_path: Path
) -> None:
    users = np.arange(tiktok_slice.n_users)
    runs = []
    for _ in range(2):
        model = _zoo()[name]
        model.epochs = 2
        runs.append(model.fit(tiktok_slice.train, tiktok_features))
    assert torch.equal(runs[0].score(users), runs[1].score(users))
    loaded = Recommender.load(runs[0].save(tmp_path / "m.pt"))
    assert loaded.get_params() == runs[0].get_params()
    assert torch.equal(loaded.score(users), runs[0].score(users))


def _with_cold_items(split: Split, n_cold: int = 50) -> tuple[Interactions, np.ndarray]:
    """Training data with the last `n_cold` items' interactions removed: they are cold."""
    cold = np.arange(split.n_items - n_cold, split.n_items)
    return split.train.select(~np.isin(split.train.item, cold)), cold


@pytest.mark.parametrize("name", ["vbpr", "freedom", "alpharec"])
def test_cold_items_are_ranked_from_content(
    name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]
) -> None:
    """A model that ignores content gives every never-seen item the same (initial) treatment; these
    rank them differently per user, and the ranking follows content similarity to warm items."""
    train, cold = _with_cold_items(tiktok_slice)
    model = _zoo()[name]
    model.epochs = 5
    model.fit(train, tiktok_features)
    scores = model.score(np.arange(50))[:, cold]
    assert scores.std(dim=1).min() > 0
    assert not torch.allclose(scores[0], scores[1])


def test_content_models_refuse_a_run_without_their_modality(tiktok_slice: Split) -> None:
    with pytest.raises(ConfigError, match="text"):
        VBPR(modalities=["text"]).fit(tiktok_slice.train, {"image": np.ones((tiktok_slice.n_items, 3))})


@pytest.mark.parametrize("fusion", ["concat", "weighted", "gated"])
def test_fusion_is_selectable(
    fusion: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]
) -> None:
    for model in (VBPR(**FAST, fusion=fusion, epochs=1), FREEDOM(**FAST, fusion=fusion, epochs=1)):
        model.fit(tiktok_slice.train, tiktok_features)
        assert torch.isfinite(model.score(np.arange(10))).all()


@pytest.mark.parametrize("shared", [False, True], ids=["per-pair", "shared"])
@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_pointwise_and_softmax_losses_train(loss: str, shared: bool, tiktok_slice: Split) -> None:
    split = tiktok_slice
    n_negatives = 64 if shared else 4
    model = BPRMF(**FAST, lr=1e-2, loss=loss, n_negatives=n_negatives, shared_negatives=shared, epochs=15)
    model.fit(split.train)
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < 0.8 * losses[0]
    assert evaluator_for(split.test, split.train, split.valid)(model)["recall@20"] > 20 / split.n_items


def test_mse_fits_explicit_ratings() -> None:
    """Low-rank ratings with noise: the MSE model must beat predicting the global mean."""
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 150
    truth = 3 + rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items)) / 2
    mask = rng.random((n_users, n_items)) < 0.3
    u, i = np.nonzero(mask)
    values = np.clip(truth[u, i] + rng.normal(scale=0.1, size=len(u)), 0.5, 5)
    train = Interactions(u, i, values, n_users, n_items)
    model = BPRMF(embedding_dim=8, loss="mse", lr=2e-2, reg_weight=0.0, batch_size=512, epochs=60).fit(train)
    assert model.predicts_ratings and not BPRMF().predicts_ratings
    pred = model.score(np.arange(n_users)).numpy()[u, i]
    rmse = np.sqrt(np.mean((pred - values) ** 2))
    assert rmse < 0.6 * values.std()


def test_rating_biases_fit_offsets_and_keep_scores_dot_products() -> None:
    """Ratings that are mean + user offset + item offset + noise: the bias terms fit them in a few
    epochs (the dot product alone must first learn a constant), and the served vectors still
    reproduce every score."""
    rng = np.random.default_rng(2)
    n_users, n_items = 120, 90
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    offsets_u, offsets_i = rng.normal(scale=0.6, size=n_users), rng.normal(scale=0.6, size=n_items)
    values = 3.5 + offsets_u[u] + offsets_i[i] + rng.normal(scale=0.1, size=len(u))
    train = Interactions(u, i, values, n_users, n_items)
    model = BPRMF(embedding_dim=4, loss="mse", lr=5e-2, reg_weight=0.0, batch_size=256, epochs=3).fit(train)
    scores = model.score(np.arange(n_users))
    rmse = float(np.sqrt(np.mean((scores.numpy()[u, i] - values) ** 2)))
    assert rmse < 0.15 < values.std()  # without the bias columns: 0.39 after 3 epochs
    torch.testing.assert_close(torch.as_tensor(model.user_vectors() @ model.item_vectors().T), scores)
