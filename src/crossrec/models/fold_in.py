"""Fold-in: a user vector for an interaction history, against frozen item vectors, without retraining.

For a ranking model the new vector u maximises the softmax likelihood of the history among all items,
mean over the history of log softmax(u . V)_i, minus l2 * |u|^2: a convex problem in u (log-sum-exp
is convex), solved for a block of users at once with L-BFGS, so it is the same answer whatever the
starting point. The softmax over every item needs no sampled negatives and no per-model code; any
dot-product model folds in the same way (the temperature is absorbed in the scale of u, so l2 is the
only knob, chosen on validation). A rating model regresses the observed ratings instead (ridge, in
closed form), as implicit's recalculate_user does for ALS.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

_BLOCK_USERS = 512


def softmax_fold_in(
    item_vectors: np.ndarray, histories: sp.csr_matrix, l2: float, max_iter: int = 50
) -> np.ndarray:
    """(n, d) user vectors for the rows of the binary `histories` (n, n_items); empty rows get 0."""
    items = torch.as_tensor(np.asarray(item_vectors, dtype=np.float32))
    histories = sp.csr_matrix(histories, dtype=np.float32)
    out = np.zeros((histories.shape[0], items.shape[1]), dtype=np.float32)
    for lo in range(0, histories.shape[0], _BLOCK_USERS):
        block = histories[lo : lo + _BLOCK_USERS]
        counts = np.asarray(block.sum(axis=1)).ravel()
        weights = torch.as_tensor(sp.diags(1 / np.maximum(counts, 1)) @ block.toarray(), dtype=torch.float32)
        result = _solve_block(items, weights, l2, max_iter)
        result[counts == 0] = 0.0
        out[lo : lo + len(counts)] = result
    return out


def _solve_block(items: torch.Tensor, weights: torch.Tensor, l2: float, max_iter: int) -> np.ndarray:
    # Start from the mean of the history's item vectors: already close, so L-BFGS needs few steps.
    u = (weights @ items).clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([u], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        log_p = torch.log_softmax(u @ items.T, dim=1)
        loss = -(weights * log_p).sum() + l2 * u.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return u.detach().numpy()


def ridge_fold_in(
    item_vectors: np.ndarray, histories: sp.csr_matrix, l2: float, fixed_last: int = 0
) -> np.ndarray:
    """(n, d) user vectors regressing the rating values in `histories` on the item vectors.

    The last `fixed_last` user columns are held at 1 (a rating model's bias columns: their item
    side is the item bias, which is subtracted from the target instead of fitted)."""
    v = np.asarray(item_vectors, dtype=np.float64)
    histories = sp.csr_matrix(histories)
    d_free = v.shape[1] - fixed_last
    out = np.zeros((histories.shape[0], v.shape[1]), dtype=np.float32)
    if fixed_last:
        out[:, d_free:] = 1.0
    offset = v[:, d_free:].sum(axis=1)
    for row in range(histories.shape[0]):
        lo, hi = histories.indptr[row], histories.indptr[row + 1]
        items, ratings = histories.indices[lo:hi], histories.data[lo:hi]
        if not len(items):
            continue
        x = v[items, :d_free]
        target = ratings - offset[items]
        out[row, :d_free] = np.linalg.solve(x.T @ x + l2 * np.eye(d_free), x.T @ target)
    return out
