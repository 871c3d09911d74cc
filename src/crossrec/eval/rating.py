"""Rating-prediction errors (RMSE, MAE) for models whose scores estimate explicit ratings."""

from __future__ import annotations

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.base import Recommender, Validator


@torch.no_grad()
def rating_errors(model: Recommender, target: Interactions, batch_size: int = 2048) -> dict[str, float]:
    """RMSE and MAE of `model.score` at every (user, item) row of `target` against its `value`.

    Users are scored a batch at a time and the needed entries gathered by tensor indexing, so the
    cost is one `score` call per batch of users whatever the number of rows."""
    if len(target) == 0:
        raise ValueError("rating_errors needs at least one interaction")
    order = np.argsort(target.user, kind="stable")
    user, item = target.user[order], target.item[order]
    value = torch.as_tensor(target.value[order], dtype=torch.float64)
    users, first = np.unique(user, return_index=True)
    bounds = np.append(first, len(user))  # rows of users[i] are bounds[i]:bounds[i + 1]
    squared, absolute = 0.0, 0.0
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        lo, hi = bounds[start], bounds[start + len(batch)]
        scores = model.score(batch)
        rows = np.searchsorted(batch, user[lo:hi])
        predicted = scores[torch.as_tensor(rows), torch.as_tensor(item[lo:hi])].to(torch.float64)
        error = predicted - value[lo:hi]
        squared += float(error.pow(2).sum())
        absolute += float(error.abs().sum())
    return {"rmse": float(np.sqrt(squared / len(user))), "mae": absolute / len(user)}


class RatingValidator:
    """Training-time validator for rating models: early stopping and tuning follow validation RMSE
    (as `neg_rmse`, to maximise), not a ranking metric the loss never aimed at; the wrapped ranking
    evaluator's metrics are still recorded in the history."""

    monitor = "neg_rmse"

    def __init__(self, ranking: Validator, target: Interactions, batch_size: int = 2048) -> None:
        self.ranking = ranking
        self.target = target
        self.batch_size = batch_size

    def __call__(self, model: Recommender) -> dict[str, float]:
        errors = rating_errors(model, self.target, self.batch_size)
        return {**self.ranking(model), **errors, "neg_rmse": -errors["rmse"]}
