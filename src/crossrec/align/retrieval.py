"""Cross-modal retrieval metrics over unit vectors, computed with one matrix product per query block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _unit(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(np.asarray(x), dtype=torch.float32), dim=1)


def paired_recall(queries: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Row i of `queries` belongs with row i of `gallery`: the share of queries whose partner ranks
    in the top k by cosine (chance is k / n). Ties count against the query."""
    q, g = _unit(queries), _unit(gallery)
    if q.shape[0] != g.shape[0]:
        raise ValueError("queries and gallery must be paired row by row")
    sims = q @ g.T
    own = sims.diagonal()[:, None]
    rank = (sims >= own).sum(1) - 1  # other gallery items scoring at least as high as the partner
    return {f"recall@{k}": float((rank < k).float().mean()) for k in ks}


def precision_at_k(queries: np.ndarray, gallery: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: the share of its top-k gallery items (by cosine) that are relevant."""
    sims = _unit(queries) @ _unit(gallery).T
    top = torch.topk(sims, min(k, sims.shape[1]), dim=1).indices.numpy()
    return np.take_along_axis(np.asarray(relevant, dtype=bool), top, axis=1).mean(1)
