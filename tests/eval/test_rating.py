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


class OffsetFromTrainMean(Recommender):
    """Predicts the training mean plus a known offset per (user, item): its errors are known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = 0.0

    @property
    def predicts_ratings(self) -> bool:
        return True

    def fit(self, train, item_features=None, valid=None):
        self.n_users, self.n_items, self.mean = train.n_users, train.n_items, float(train.value.mean())
        return self

    @staticmethod
    def offset(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return ((users * 7 + items * 3) % 5 - 2) * 0.25

    def score(self, users: np.ndarray) -> torch.Tensor:
        u, i = np.meshgrid(np.asarray(users), np.arange(self.n_items), indexing="ij")
        return torch.as_tensor(self.mean + self.offset(u, i), dtype=torch.float32)


@pytest.fixture
def offset_model_registered():
    from crossrec.models import MODELS

    MODELS.register("offset-from-train-mean", OffsetFromTrainMean)
    yield "offset-from-train-mean"
    MODELS.unregister("offset-from-train-mean")


def _errors(predicted: np.ndarray, value: np.ndarray) -> dict[str, float]:
    error = predicted.astype(np.float64) - value
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


@pytest.mark.slow
def test_reported_errors_are_those_of_the_predictions(shared_data, tmp_path, offset_model_registered):
    """The RMSE and MAE a run reports, recomputed from the saved split: exactly those of a model whose
    predictions are known, and for a trained rating model below those of predicting the training mean."""
    from crossrec.data.schema import Split
    from crossrec.experiment import run_experiment

    config = {
        "name": "ratings",
        "output_dir": str(tmp_path),
        "dataset": {
            "format": "movielens",
            "path": str(shared_data / "movielens-small"),
            "options": {"posters": False, "overviews": False},
        },
        "split": {"method": "random"},
        "models": [
            {"name": offset_model_registered, "label": "known"},
            {"name": "bpr", "label": "mf-mse", "params": {"loss": "mse", "epochs": 4, "embedding_dim": 8}},
        ],
        "report": {"plots": False},
    }
    payload = run_experiment(config, quiet=True).summary.to_dict()
    split = Split.load(tmp_path / "ratings" / "split.npz")
    mean = float(np.mean(split.train.value))
    for part in ("valid", "test"):
        rows = getattr(split, part)
        known = _errors(mean + OffsetFromTrainMean.offset(rows.user, rows.item), rows.value)
        reported = payload["models"]["known"][part]
        assert {m: reported[m]["mean"] for m in known} == pytest.approx(known, rel=1e-5), part
        floor = _errors(np.full(len(rows), mean), rows.value)  # the global-mean predictor
        trained = payload["models"]["mf-mse"][part]
        assert trained["rmse"]["mean"] < floor["rmse"] and trained["mae"]["mean"] < floor["mae"], part
