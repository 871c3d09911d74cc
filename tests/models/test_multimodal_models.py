"""The content models on a real TikTok slice with its image and audio features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrec.data.schema import Interactions, Split
from crossrec.errors import ConfigError
from crossrec.eval.ranking import evaluator_for
from crossrec.models import BM3, BPRMF, FREEDOM, VBPR, AlphaRec, MostPop, NeuralRecommender, Recommender

FAST = {"embedding_dim": 32, "batch_size": 1024}


ZOO: dict[str, tuple[type[NeuralRecommender], dict[str, object]]] = {
    "vbpr": (VBPR, {"lr": 1e-2, "reg_weight": 1e-2, "epochs": 20}),
    "freedom": (FREEDOM, {"lr": 1e-2, "edge_keep": 0.5, "modality_loss_weight": 0.1, "epochs": 20}),
    "freedom-shared-softmax": (
        FREEDOM,
        {
            "lr": 1e-2,
            "loss": "softmax",
            "n_negatives": 128,
            "shared_negatives": True,
            "temperature": 0.2,
            "modality_loss_weight": 0.1,
            "epochs": 20,
        },
    ),
    "bm3": (BM3, {"lr": 1e-3, "epochs": 20}),
    "alpharec": (AlphaRec, {"hidden_dim": 32, "lr": 1e-3, "n_negatives": 8, "epochs": 20}),
}


def _model(name: str, **overrides: object) -> NeuralRecommender:
    cls, params = ZOO[name]
    return cls(**{**FAST, **params, **overrides})  # type: ignore[arg-type]


def _zoo() -> dict[str, NeuralRecommender]:
    return {name: _model(name) for name in ZOO}


# Settings under which each model beats MostPop on the slice, chosen on validation (all of seeds 0-3 beat
# it on test too). MostPop is strong here (recall@20 .085, 12x chance): VBPR and AlphaRec never beat it
# on this slice at any lr, epochs or loss tried (best .051 and .050), so their MostPop test runs on
# MovieLens with genre features (tests/models/test_models_on_movielens.py).
BEATS_MOSTPOP: dict[str, dict[str, object]] = {
    "freedom": {"lr": 5e-3, "n_layers": 3, "edge_keep": 0.8},
    "freedom-shared-softmax": {"lr": 2e-3, "n_layers": 3, "edge_keep": 0.8, "temperature": 0.5},
}


@pytest.mark.parametrize("name", list(BEATS_MOSTPOP))
def test_beats_mostpop(name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]) -> None:
    split = tiktok_slice
    model = _model(name, **BEATS_MOSTPOP[name], epochs=50, eval_every=2, patience=8)
    model.fit(split.train, tiktok_features, valid=evaluator_for(split.valid, split.train))
    test = evaluator_for(split.test, split.train, split.valid)
    floor = test(MostPop().fit(split.train))["recall@20"]
    assert test(model)["recall@20"] > floor, (test(model), floor)


@pytest.mark.parametrize("name", list(ZOO))
def test_seeded_and_saved(
    name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray], tmp_path: Path
) -> None:
    users = np.arange(tiktok_slice.n_users)
    runs = []
    for _ in range(2):
        model = _model(name, epochs=2)
        runs.append(model.fit(tiktok_slice.train, tiktok_features))
    assert torch.equal(runs[0].score(users), runs[1].score(users))
    loaded = Recommender.load(runs[0].save(tmp_path / "m.pt"))
    assert loaded.get_params() == runs[0].get_params()
    assert torch.equal(loaded.score(users), runs[0].score(users))


def _with_cold_items(split: Split, n_cold: int = 50) -> tuple[Interactions, np.ndarray]:
    """Training data with the last `n_cold` items' interactions removed: they are cold."""
    cold = np.arange(split.n_items - n_cold, split.n_items)
    return split.train.select(~np.isin(split.train.item, cold)), cold


def _columnwise_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of `a` with the same column of `b`."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def _follows_content(model: Recommender, cold: np.ndarray, features: dict[str, np.ndarray]) -> float:
    """How much more a cold item's scores (over all users) correlate with those of the warm item nearest
    to it in content than with those of random warm items, averaged over cold items. About 0 for a
    model that ignores content, whatever it does to never-seen items; near 1 when content decides."""
    warm = np.setdiff1d(np.arange(model.n_items), cold)
    unit = [f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12) for f in features.values()]
    content = np.hstack(unit)  # dot product = the sum of the per-modality cosines
    nearest = warm[np.argmax(content[cold] @ content[warm].T, axis=1)]
    scores = model.score(np.arange(model.n_users)).numpy()
    to_nearest = _columnwise_correlation(scores[:, cold], scores[:, nearest])
    others = np.random.default_rng(0).choice(warm, size=(20, len(cold)))
    to_others = np.mean([_columnwise_correlation(scores[:, cold], scores[:, row]) for row in others], axis=0)
    return float(np.mean(to_nearest - to_others))


@pytest.mark.parametrize("name", ["vbpr", "freedom", "alpharec"])
def test_cold_items_are_scored_like_their_content_neighbours(
    name: str, tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]
) -> None:
    """Items never met in training are ranked from their content: each cold item is scored like the
    warm item most similar to it in content. On this slice after 5 epochs: VBPR .83, FREEDOM .27,
    AlphaRec .87; the content-blind BPR-MF -.06 and LightGCN -.05 (their cold items are scored alike,
    pushed down as negatives only)."""
    train, cold = _with_cold_items(tiktok_slice)
    model = _model(name, epochs=5).fit(train, tiktok_features)
    assert _follows_content(model, cold, tiktok_features) > 0.15


def test_content_models_refuse_a_run_without_their_modality(tiktok_slice: Split) -> None:
    with pytest.raises(ConfigError, match="text"):
        VBPR(modalities=["text"]).fit(tiktok_slice.train, {"image": np.ones((tiktok_slice.n_items, 3))})


@pytest.mark.parametrize(
    ("cls", "fusions"),
    [(VBPR, ["concat", "weighted", "gated"]), (FREEDOM, ["mean", "concat", "weighted", "gated"])],
    ids=["vbpr", "freedom"],
)
def test_each_fusion_gives_its_own_scores(
    cls: type[NeuralRecommender],
    fusions: list[str],
    tiktok_slice: Split,
    tiktok_features: dict[str, np.ndarray],
) -> None:
    """Same seed, same data: only the fusion differs, so the scores must. FREEDOM's weighted fusion starts
    at equal weights, which is its mean fusion: 2 epochs at lr 1e-2 move them ~1% apart (float noise: 1e-7).
    """
    users = np.arange(200)
    scores = {}
    for fusion in fusions:
        model = cls(**FAST, fusion=fusion, lr=1e-2, epochs=2).fit(tiktok_slice.train, tiktok_features)
        scores[fusion] = model.score(users)
        assert torch.isfinite(scores[fusion]).all()
    for i, a in enumerate(fusions):
        for b in fusions[i + 1 :]:
            gap = (scores[a] - scores[b]).abs().max() / scores[a].abs().max()
            assert gap > 1e-3, (a, b, float(gap))


def test_freedom_mean_fusion_averages_the_modality_graphs(
    tiktok_slice: Split, tiktok_features: dict[str, np.ndarray]
) -> None:
    """The mean of two copies of one modality's graph is that graph: the scores equal the one-modality
    model's exactly (a sum would double the item-item term); with two real modalities the scores differ
    from either alone (both graphs are used)."""
    train, image, audio = tiktok_slice.train, tiktok_features["image"], tiktok_features["audio"]
    users = np.arange(200)

    def scores(features: dict[str, np.ndarray]) -> torch.Tensor:
        # No per-modality loss: the projections, one per modality, then play no part in training.
        model = FREEDOM(**FAST, fusion="mean", modality_loss_weight=0.0, lr=1e-2, epochs=2)
        return model.fit(train, features).score(users)

    alone = scores({"image": image})
    torch.testing.assert_close(scores({"image": image, "image_again": image.copy()}), alone)
    both = scores({"image": image, "audio": audio})
    assert not torch.allclose(both, alone, rtol=1e-3) and not torch.allclose(
        both, scores({"audio": audio}), rtol=1e-3
    )


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
