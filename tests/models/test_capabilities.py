"""The two optional capabilities of the contract: fold-in of a history, and content -> item vector."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crossrec.data.features import ItemFeatures
from crossrec.eval.ranking import evaluator_for
from crossrec.models import MODELS, build_model
from crossrec.models.base import EmbeddingRecommender


class _Fixed(EmbeddingRecommender):
    def __init__(self, users, items) -> None:
        super().__init__()
        import torch

        self._e = (torch.as_tensor(users), torch.as_tensor(items))

    def fit(self, train, item_features=None, valid=None):  # pragma: no cover - never trained
        return self

    def _embeddings(self):
        return self._e


def test_every_registered_model_declares_what_it_can_do():
    content = {"contentknn", "alpharec", "vbpr", "freedom"}
    assert {n for n, cls in MODELS.items() if cls.can_embed_content} == content
    assert not MODELS["mostpop"].can_fold_in and not MODELS["itemknn"].can_fold_in
    with pytest.raises(NotImplementedError, match="MostPop cannot fold"):
        build_model("mostpop").fold_in(sp.csr_matrix((1, 3)))


def test_contentknn_fold_in_is_exact(tiktok_slice, tiktok_features):
    model = build_model("contentknn", feature="image").fit(tiktok_slice.train, tiktok_features)
    folded = model.fold_in(tiktok_slice.train.to_csr())
    np.testing.assert_allclose(folded, model.user_vectors(), atol=1e-5)


def test_fold_in_recovers_most_of_the_trained_users_quality(tiktok_slice):
    """Rebuilt from training histories alone, LightGCN's user vectors keep most of the trained ones'
    recall and stay above popularity."""
    split = tiktok_slice
    model = build_model("lightgcn", embedding_dim=32, lr=0.01, epochs=25, seed=0).fit(split.train)
    test = evaluator_for(split.test, split.train, split.valid)
    trained = test.evaluate(model).metrics["recall@20"]
    model.fold_in_l2 = 1.0
    folded = model.fold_in(split.train.to_csr())
    rebuilt = test.evaluate(_Fixed(folded, model.item_vectors())).metrics["recall@20"]
    popular = test.evaluate(build_model("mostpop").fit(split.train)).metrics["recall@20"]
    assert rebuilt > popular and rebuilt > 0.9 * trained


def test_rating_fold_in_fits_the_ratings(tiktok_slice):
    """A rating model's folded user predicts that user's training ratings about as well as training did."""
    train = tiktok_slice.train
    rng = np.random.default_rng(0)
    rated = type(train)(train.user, train.item, rng.integers(1, 6, len(train)), train.n_users, train.n_items)
    model = build_model("bpr", loss="mse", embedding_dim=8, lr=0.01, epochs=15, seed=0).fit(rated)
    model.fold_in_l2 = 1.0
    users = model.fold_in(rated.to_csr(binary=False)[:200])
    assert np.allclose(users[:, -1], 1.0)  # the bias column the item bias multiplies
    items = model.item_vectors()
    sub = rated.select(rated.user < 200)
    folded_err = np.mean((np.sum(users[sub.user] * items[sub.item], 1) - sub.value) ** 2)
    mean_err = np.mean((sub.value - rated.value.mean()) ** 2)
    assert folded_err < mean_err


@pytest.mark.parametrize("name", ["alpharec", "vbpr"])
def test_content_maps_to_the_vector_a_never_seen_item_gets(tiktok_slice, tiktok_features, name):
    """Items with no training interaction are isolated in training; mapping their content gives
    the vector the trained model holds for them (AlphaRec), or its content half (VBPR)."""
    split = tiktok_slice
    train = split.train.select(~np.isin(split.train.item, np.arange(40)))  # items 0-39: never seen
    model = build_model(
        name, embedding_dim=16, epochs=3, seed=0, **({"hidden_dim": 32} if name == "alpharec" else {})
    )
    model.fit(train, tiktok_features)
    features = {m: ItemFeatures.from_matrix(x).take(np.arange(40)) for m, x in tiktok_features.items()}
    mapped = model.embed_items(features)
    held = model.item_vectors()[:40]
    if name == "vbpr":
        held, mapped = held[:, 16:], mapped[:, 16:]
        assert np.allclose(model.embed_items(features)[:, :16], 0)
    np.testing.assert_allclose(mapped, held, atol=1e-5)


def test_freedom_places_new_items_by_their_content_neighbours(shared_data):
    """Cold items mapped from their genres only are ranked for the users who consumed their content
    neighbours: cold Recall@20 among the cold test items far above vectors drawn at random."""
    from crossrec.data.loaders import load_dataset
    from crossrec.data.splits import make_split

    data = load_dataset("movielens", shared_data / "movielens-small")
    split = make_split(data, "cold_item", cold_fraction=0.1, seed=0)
    genres = {"genres": ItemFeatures.from_matrix(data.content.features["genres"])}
    model = build_model("freedom", modalities=["genres"], epochs=8, lr=0.005, edge_keep=1.0, seed=0)
    model.fit(split.train, genres)
    cold = split.cold_items
    among_cold = evaluator_for(
        split.test, split.train, split.valid, candidate_items=np.intersect1d(cold, split.test.item)
    )
    items = model.item_vectors().copy()
    items[cold] = model.embed_items({"genres": genres["genres"].take(cold)})
    mapped = among_cold.evaluate(_Fixed(model.user_vectors(), items)).metrics["recall@20"]
    items[cold] = np.random.default_rng(0).normal(size=(len(cold), items.shape[1])).astype(np.float32)
    random = among_cold.evaluate(_Fixed(model.user_vectors(), items)).metrics["recall@20"]
    assert mapped > 2 * random, (mapped, random)
