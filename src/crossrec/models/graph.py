"""The user-item bipartite graph of graph models, kept sparse end to end (scipy CSR -> torch CSR)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.schema import Interactions


def normalized_adjacency(train: Interactions) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of A = [[0, R], [R^T, 0]] over users then items (He et al. 2020, eq. 7).

    Nodes without edges keep an all-zero row instead of a division by zero."""
    r = train.to_csr(binary=True)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    d = sp.diags(inv_sqrt.astype(np.float32))
    out = (d @ adj @ d).tocsr()
    out.sort_indices()
    return out


def to_torch_csr(mat: sp.csr_matrix) -> torch.Tensor:
    """A torch.sparse_csr tensor sharing nothing with `mat`; CSR is the fastest CPU sparse x dense."""
    mat = mat.tocsr()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            torch.from_numpy(mat.indptr.astype(np.int64)),
            torch.from_numpy(mat.indices.astype(np.int64)),
            torch.from_numpy(mat.data.astype(np.float32)),
            size=mat.shape,
            check_invariants=False,
        )


class _SymmetricSpMM(torch.autograd.Function):
    """A @ X for a symmetric sparse A: the gradient is A @ G, so no transpose is ever built."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj  # type: ignore[attr-defined]
        return adj @ x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad  # type: ignore[attr-defined]


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Mean of the layer embeddings E_0..E_K with E_k = A E_{k-1} (LightGCN, eq. 8 with a_k = 1/(K+1))."""
    total = ego
    layer = ego
    for _ in range(n_layers):
        layer = _SymmetricSpMM.apply(adj, layer)
        total = total + layer
    return total / (n_layers + 1)
