"""RMSE and MAE read at exactly the (user, item) pairs of the target, whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrec.data.schema import Interactions
from crossrec.eval.ranking import evaluator_for
from crossrec.eval.rating import RatingValidator, rating_errors
from crossrec.models import BPRMF
from crossrec.models.base import Recommender


class KnownScores(Recommender):
    """score(u, i) = u + i / 10: every prediction is known in advance."""

    def __init__(self, n_users: int = 7, n_items: int = 5) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.batches: list[int] = []

    def fit(self, train, item_features=None, valid=None):
        return self

    def score(self, users: np.ndarray) -> torch.Tensor:
        self.batches.append(len(users))
        u = torch.as_tensor(np.asarray(users), dtype=torch.float32)[:, None]
        return u + torch.arange(self.n_items, dtype=torch.float32)[None, :] / 10


def test_errors_match_a_direct_computation_for_any_batch_size():
    rng = np.random.default_rng(0)
    user, item = rng.integers(0, 7, 40), rng.integers(0, 5, 40)
    value = rng.uniform(0, 5, 40)
    target = Interactions(user, item, value, n_users=7, n_items=5)
    error = (user + item / 10) - value.astype(np.float32)
    expected = {"rmse": np.sqrt(np.mean(error**2)), "mae": np.mean(np.abs(error))}
    for batch_size in (1, 3, 100):
        model = KnownScores()
        got = rating_errors(model, target, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-5)
        n_users = len(np.unique(user))
        assert model.batches == [min(batch_size, n_users - s) for s in range(0, n_users, batch_size)]


def test_exact_predictions_have_no_error_and_empty_targets_are_refused():
    target = Interactions([2, 0, 2], [1, 4, 3], [2.1, 0.4, 2.3], n_users=7, n_items=5)
    assert rating_errors(KnownScores(), target) == pytest.approx({"rmse": 0.0, "mae": 0.0}, abs=1e-6)
    assert KnownScores().predicts_ratings is False  # the contract's default
    with pytest.raises(ValueError, match="at least one"):
        rating_errors(KnownScores(), Interactions([], [], [], n_users=7, n_items=5))


def test_rating_models_stop_on_validation_rmse() -> None:
    """Early stopping of an MSE model follows validation RMSE: the restored epoch is the one with the
    lowest RMSE, whatever the ranking metrics did."""
    rng = np.random.default_rng(1)
    n_users, n_items = 150, 120
    truth = 3 + rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items)) / 2
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    values = np.clip(truth[u, i] + rng.normal(scale=0.3, size=len(u)), 0.5, 5)
    held = rng.random(len(u)) < 0.2
    train = Interactions(u[~held], i[~held], values[~held], n_users, n_items)
    valid_rows = Interactions(u[held], i[held], values[held], n_users, n_items)
    valid = RatingValidator(evaluator_for(valid_rows, train), valid_rows)
    model = BPRMF(
        embedding_dim=16, loss="mse", lr=5e-2, reg_weight=0.0, batch_size=512, epochs=60, patience=3
    )
    model.fit(train, valid=valid)
    rmse = {h["epoch"]: h["rmse"] for h in model.history}
    assert model.best_epoch == min(rmse, key=rmse.get)
    assert model.best_epoch < len(model.history)  # it overfits without regularisation, and stops
    assert rating_errors(model, valid_rows)["rmse"] == pytest.approx(rmse[model.best_epoch], rel=1e-5)
    assert "recall@20" in model.history[0]
