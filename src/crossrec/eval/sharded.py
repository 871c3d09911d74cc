"""Full ranking over many users, sharded across Ray workers: evaluation and batch top-k.

Each shard is a run of whole scoring batches, scored by a Ray task that reads the evaluator (or the
masks) and the model from the object store; the parts are put back together in order, so the result
equals the local path's. Ray is optional: only these functions need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.errors import ConfigError
from crossrec.eval.ranking import RankingEvaluator, RankingResult, scoring_batch
from crossrec.models.base import Recommender


@torch.no_grad()
def batch_top_k(
    model: Recommender,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """(len(users), k) item indices, best first, with each user's `exclude` row masked out; `batch_size`
    users at a time (default: `scoring_batch` of the catalogue, so memory stays bounded)."""
    batch_size = batch_size or scoring_batch(model.n_items)
    out = []
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = model.score(batch).to(torch.float32).clone()
        if exclude is not None:
            RankingEvaluator._mask(scores, exclude, batch)
        out.append(torch.topk(scores, k, dim=1, sorted=True).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def evaluate_sharded(evaluator: RankingEvaluator, model: Recommender, shards: int) -> RankingResult:
    """`evaluator.evaluate(model)`, its users split over `shards` Ray tasks."""
    ray = _ray()
    task = ray.remote(_evaluate_part)
    shared_evaluator, shared_model = ray.put(evaluator), ray.put(model)
    parts = [task.remote(shared_evaluator, shared_model, users) for users in evaluator.shards(shards)]
    return evaluator.combine(ray.get(parts))


def top_k_sharded(
    model: Recommender,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    shards: int,
    batch_size: int | None = None,
) -> np.ndarray:
    """`batch_top_k` with the users split over `shards` Ray tasks at batch boundaries."""
    ray = _ray()
    task = ray.remote(batch_top_k)
    batch_size = batch_size or scoring_batch(model.n_items)
    shared_model, shared_exclude = ray.put(model), ray.put(exclude)
    batches = max(1, -(-len(users) // batch_size))
    cuts = [part * batch_size for part in np.array_split(np.arange(batches), max(1, min(shards, batches)))]
    refs = [
        task.remote(shared_model, users[c[0] : c[-1] + batch_size], k, shared_exclude, batch_size)
        for c in cuts
        if len(c)
    ]
    parts = ray.get(refs)
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def _evaluate_part(
    evaluator: RankingEvaluator, model: Recommender, users: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return evaluator.evaluate_users(model, users)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'crossrec[ray]' (docs/scale.md)") from None
    if not ray.is_initialized():
        raise ConfigError("connect to a Ray cluster first: ray.init(address)")
    return ray
