"""Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004) on cosine similarity."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput, Recommender, Validator

# Dense similarity block per chunk: rows x n_items float32 values (64 MiB), whatever the catalogue size.
_BLOCK_VALUES = 1 << 24


def topk_cosine(matrix: sp.csr_matrix, k: int, shrinkage: float = 0.0) -> sp.csr_matrix:
    """Item x item cosine similarity of the columns of `matrix`, keeping each item's `k` most similar
    other items: cos(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrinkage).

    Built a block of rows at a time from sparse products, so memory is one dense block plus the
    n_items x k result, never a dense n_items x n_items matrix.
    """
    n_items = matrix.shape[1]
    full = sp.csr_matrix(matrix, dtype=np.float32)
    by_item = full.T.tocsr()
    norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(axis=1)).ravel()).astype(np.float32)
    k = min(k, n_items - 1)
    step = max(1, _BLOCK_VALUES // max(1, n_items))
    rows, cols, vals = [], [], []
    for lo in range(0, n_items, step):
        hi = min(lo + step, n_items)
        block = (by_item[lo:hi] @ full).toarray()
        denom = norms[lo:hi, None] * norms[None, :] + shrinkage
        np.divide(block, denom, out=block, where=denom > 0)
        block[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        if k <= 0:
            continue
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_vals = np.take_along_axis(block, top, axis=1)
        keep = top_vals > 0
        rows.append(np.nonzero(keep)[0] + lo)
        cols.append(top[keep])
        vals.append(top_vals[keep])
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    sim = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    sim.sort_indices()
    return sim


class ItemKNN(Recommender):
    """score(u, j) = sum of sim(j, i) over the items i that u met in training, where sim(j, .) keeps
    only j's `k` nearest neighbours; `shrinkage` damps similarities backed by few co-occurrences."""

    name = "ItemKNN"

    def __init__(self, k: int = 50, shrinkage: float = 0.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        self.k = k
        self.shrinkage = shrinkage
        self._train = sp.csr_matrix((0, 0), dtype=np.float32)
        self._sim_t = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
    ) -> Self:
        self.n_users, self.n_items = train.n_users, train.n_items
        self._train = train.to_csr(binary=True)
        # Stored transposed, so scoring is one sparse product: user rows x sim^T.
        self._sim_t = topk_cosine(self._train, self.k, self.shrinkage).T.tocsr()
        return self

    def similarity(self) -> sp.csr_matrix:
        """Row j holds item j's kept neighbours and their cosine similarity."""
        return self._sim_t.T.tocsr()

    def score(self, users: np.ndarray) -> torch.Tensor:
        rows = self._train[np.asarray(users, dtype=np.int64)]
        return torch.from_numpy((rows @ self._sim_t).toarray().astype(np.float32, copy=False))

    def _state(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, mat in (("train", self._train), ("sim_t", self._sim_t)):
            state[f"{name}_indptr"] = torch.from_numpy(mat.indptr.astype(np.int64))
            state[f"{name}_indices"] = torch.from_numpy(mat.indices.astype(np.int64))
            state[f"{name}_data"] = torch.from_numpy(mat.data.astype(np.float32))
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        shapes = {"train": (self.n_users, self.n_items), "sim_t": (self.n_items, self.n_items)}
        for name, shape in shapes.items():
            mat = sp.csr_matrix(
                (
                    state[f"{name}_data"].numpy(),
                    state[f"{name}_indices"].numpy(),
                    state[f"{name}_indptr"].numpy(),
                ),
                shape=shape,
            )
            setattr(self, f"_{name}", mat)
