from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrec.data.schema import Interactions, Split
from crossrec.models import itemknn
from crossrec.models.base import Recommender
from crossrec.models.itemknn import ItemKNN, topk_cosine


def _tiny(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    dense = rng.random((30, 12)) < 0.3
    dense[:, 11] = False  # an item nobody met: its similarities must be 0, not NaN
    users, items = np.nonzero(dense)
    return Interactions(users, items, np.ones(len(users)), n_users=30, n_items=12)


def _dense_cosine(train: Interactions, shrinkage: float) -> np.ndarray:
    x = train.to_csr().toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    denom = norms[:, None] * norms[None, :] + shrinkage
    sim = np.divide(x.T @ x, denom, out=np.zeros((x.shape[1],) * 2), where=denom > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrinkage", [0.0, 2.5])
def test_scores_equal_a_dense_reference(shrinkage: float) -> None:
    train = _tiny()
    model = ItemKNN(k=100, shrinkage=shrinkage).fit(train)
    sim = _dense_cosine(train, shrinkage)
    expected = train.to_csr().toarray() @ sim.T
    users = np.arange(train.n_users)
    np.testing.assert_allclose(model.score(users).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_keeps_each_items_k_most_similar(monkeypatch: pytest.MonkeyPatch) -> None:
    train = _tiny(1)
    reference = _dense_cosine(train, 0.0)
    monkeypatch.setattr(itemknn, "_BLOCK_VALUES", 3 * train.n_items)  # force several chunks
    kept = topk_cosine(train.to_csr(), k=3).toarray()
    for row, ref in zip(kept, reference, strict=True):
        assert np.count_nonzero(row) <= 3
        # Compared by value, so ties among equally similar neighbours may go either way.
        np.testing.assert_allclose(
            np.sort(row[row > 0])[::-1], np.sort(ref)[::-1][: np.count_nonzero(row)], rtol=1e-6
        )
        assert np.count_nonzero(row) == min(3, np.count_nonzero(ref))


def test_round_trips_on_a_real_slice(tiktok_slice: Split, tmp_path: Path) -> None:
    """Quality is checked where ItemKNN can show it: it beats MostPop on MovieLens
    (tests/models/test_models_on_movielens.py), not on this TikTok slice, where MostPop's recall@20 (.085)
    is above ItemKNN's at every k (20 to 2,000) and shrinkage (0 to 100) tried (best .038)."""
    split = tiktok_slice
    model = ItemKNN(k=50).fit(split.train)
    loaded = Recommender.load(model.save(tmp_path / "knn.pt"))
    users = np.arange(split.n_users)
    assert torch.equal(loaded.score(users), model.score(users))
    assert loaded.get_params() == {"k": 50, "shrinkage": 0.0}
