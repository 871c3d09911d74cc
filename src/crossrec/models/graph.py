"""The user-item bipartite graph of graph models, kept sparse end to end (scipy CSR -> torch CSR)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.schema import Interactions


def normalized_adjacency(train: Interactions | sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of A = [[0, R], [R^T, 0]] over users then items (He et al. 2020, eq. 7).

    `train` is the interactions or their binary user x item matrix R."""
    r = train.to_csr(binary=True) if isinstance(train, Interactions) else sp.csr_matrix(train)
    return symmetric_normalize(sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32))


def symmetric_normalize(adj: sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of a symmetric A; nodes without edges keep an all-zero row, not a NaN."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    d = sp.diags(inv_sqrt.astype(np.float32))
    out = (d @ adj @ d).tocsr()
    out.sort_indices()
    return out


EXACT_KNN_BELOW = 50_000  # items; from here the kNN graph is found with an IVF index, not exactly


def knn_graph(
    features: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
    *,
    exact_below: int = EXACT_KNN_BELOW,
    nprobe: int = 16,
) -> sp.csr_matrix:
    """The symmetrised, normalised top-k cosine graph of the rows of `features` (FREEDOM's frozen
    item-item graph); an item is its own nearest neighbour, and rows without content (all zero) get
    no edges.

    Below `exact_below` rows it is exact, chunk by chunk (memory chunk x n, never n x n; the default
    chunk keeps that block within 2^26 similarities), and its time grows as n^2 x d. From there on the
    neighbours come from a FAISS IVF index (about 4 sqrt(n) cells, `nprobe` searched per item), whose
    time grows about as n^1.5 x d: an exact graph of 1M items would take hours."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = torch.nn.functional.normalize(features.float(), dim=1)
    n, k = x.shape[0], min(k, x.shape[0])
    has = x.abs().sum(1) > 0
    if n >= exact_below:
        r, c = _ivf_neighbours(x.numpy(), has.numpy(), k, nprobe)
    else:
        r, c = _exact_neighbours(x, has, k, chunk_size or max(1, min(2048, (1 << 26) // max(n, 1))))
    adj = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n))
    return symmetric_normalize(adj.maximum(adj.T))


def _exact_neighbours(
    x: torch.Tensor, has: torch.Tensor, k: int, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for lo in range(0, x.shape[0], chunk):
        sims = x[lo : lo + chunk] @ x.T
        sims[:, ~has] = -torch.inf
        top = sims.topk(k, dim=1).indices
        keep = has[lo : lo + chunk].unsqueeze(1).expand_as(top)
        rows.append((torch.arange(lo, lo + len(top)).unsqueeze(1).expand_as(top))[keep])
        cols.append(top[keep])
    return torch.cat(rows).numpy(), torch.cat(cols).numpy()


def _ivf_neighbours(x: np.ndarray, has: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    ids = np.flatnonzero(has).astype(np.int64)
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    vectors = np.ascontiguousarray(x[ids], dtype=np.float32)
    nlist = max(1, min(int(4 * np.sqrt(len(ids))), len(ids) // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(ids), min(len(ids), 64 * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add_with_ids(vectors, ids)
    index.nprobe = nprobe
    rows, cols = [], []
    for lo in range(0, len(ids), 65_536):
        _, found = index.search(vectors[lo : lo + 65_536], k)
        own = np.repeat(ids[lo : lo + 65_536], k)
        found = found.ravel()
        keep = found >= 0
        rows.append(own[keep])
        cols.append(found[keep])
    return np.concatenate(rows), np.concatenate(cols)


def degree_sensitive_prune(r: sp.csr_matrix, keep: float, rng: np.random.Generator) -> sp.csr_matrix:
    """A `keep` share of the user-item edges, drawn without replacement with probability
    proportional to 1 / sqrt(d_u d_i) (FREEDOM's denoising): edges between hubs go first."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    coo = r.tocoo()
    if keep == 1:
        return sp.csr_matrix(coo)
    du = np.asarray(r.sum(axis=1)).ravel()[coo.row]
    di = np.asarray(r.sum(axis=0)).ravel()[coo.col]
    log_p = -0.5 * (np.log(du) + np.log(di))
    # Gumbel top-k draws a weighted sample without replacement in one vectorised pass.
    keys = log_p - np.log(-np.log(rng.random(len(log_p))))
    n_keep = max(1, round(keep * len(keys)))
    chosen = np.argpartition(-keys, n_keep - 1)[:n_keep]
    return sp.csr_matrix(
        (np.ones(n_keep, dtype=np.float32), (coo.row[chosen], coo.col[chosen])), shape=r.shape
    )


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


def propagate_bipartite(
    adj: torch.Tensor, users: torch.Tensor, items: torch.Tensor, n_layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`propagate` over the user-item graph of `normalized_adjacency`: (user, item) embeddings in,
    the smoothed (user, item) embeddings out."""
    final = propagate(adj, torch.cat([users, items]), n_layers)
    return final[: len(users)], final[len(users) :]


def power_propagate(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """A^K x for a symmetric sparse A (FREEDOM's item-item smoothing keeps only the last layer)."""
    for _ in range(n_layers):
        x = _SymmetricSpMM.apply(adj, x)
    return x
