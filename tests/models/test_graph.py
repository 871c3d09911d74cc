from __future__ import annotations

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.graph import (
    degree_sensitive_prune,
    knn_graph,
    normalized_adjacency,
    propagate,
    to_torch_csr,
)


def _tiny() -> Interactions:
    # 4 users x 5 items; user 3 and item 4 have no edges; a duplicate row must count once.
    users = [0, 0, 1, 1, 2, 2, 0]
    items = [0, 1, 1, 2, 0, 3, 0]
    return Interactions(users, items, np.ones(len(users)), n_users=4, n_items=5)


def _dense_reference(train: Interactions) -> np.ndarray:
    n = train.n_users + train.n_items
    adj = np.zeros((n, n))
    for u, i in zip(train.user, train.item, strict=True):
        adj[u, train.n_users + i] = adj[train.n_users + i, u] = 1.0
    deg = adj.sum(1)
    inv = np.array([d**-0.5 if d > 0 else 0.0 for d in deg])
    return inv[:, None] * adj * inv[None, :]


def test_normalisation_matches_dense() -> None:
    train = _tiny()
    sparse = normalized_adjacency(train)
    np.testing.assert_allclose(sparse.toarray(), _dense_reference(train), rtol=1e-6)
    as_torch = to_torch_csr(sparse)
    assert as_torch.layout == torch.sparse_csr
    np.testing.assert_allclose(as_torch.to_dense().numpy(), _dense_reference(train), rtol=1e-6)


def test_propagation_and_its_gradient_match_dense() -> None:
    train = _tiny()
    dense = torch.tensor(_dense_reference(train), dtype=torch.float64)
    adj = to_torch_csr(normalized_adjacency(train)).to(torch.float64)
    ego = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_sparse = ego.clone().requires_grad_(True)
    x_dense = ego.clone().requires_grad_(True)
    out_sparse = propagate(adj, x_sparse, 3)
    out_dense = (x_dense + dense @ x_dense + dense @ dense @ x_dense + dense @ dense @ dense @ x_dense) / 4
    torch.testing.assert_close(out_sparse, out_dense)
    weights = torch.randn(9, 4, dtype=torch.float64)
    (out_sparse * weights).sum().backward()
    (out_dense * weights).sum().backward()
    torch.testing.assert_close(x_sparse.grad, x_dense.grad)


def test_knn_graph_is_chunk_independent_symmetric_and_skips_empty_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 8, generator=gen)
    feats[7] = 0.0  # an item without content
    one = knn_graph(feats, k=4, chunk_size=1000)
    chunked = knn_graph(feats, k=4, chunk_size=7)
    np.testing.assert_allclose(one.toarray(), chunked.toarray())
    dense = one.toarray()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-6)
    assert dense[7].sum() == 0 and dense[:, 7].sum() == 0
    # Every other row links to itself and to its 3 nearest others (before symmetrisation adds more).
    sims = torch.nn.functional.normalize(feats, dim=1) @ torch.nn.functional.normalize(feats, dim=1).T
    sims[:, 7] = -2
    for row in (0, 13, 49):
        assert set(sims[row].topk(4).indices.tolist()) <= set(np.flatnonzero(dense[row]).tolist())


def test_degree_sensitive_prune_keeps_the_share_and_favours_edges_between_rare_nodes() -> None:
    import scipy.sparse as sp

    # User 0 and item 0 are hubs; users 1..39 each have one private item plus item 0.
    rows = [0] * 40 + list(range(1, 40)) + list(range(1, 40))
    cols = list(range(40)) + [0] * 39 + list(range(40, 79))
    r = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(40, 79))
    rng = np.random.default_rng(0)
    hub_kept = rare_kept = 0
    for _ in range(20):
        kept = degree_sensitive_prune(r, 0.5, rng)
        assert kept.nnz == round(0.5 * r.nnz)
        assert (kept - kept.multiply(r)).nnz == 0  # only existing edges
        hub_kept += kept[0, 0]
        rare_kept += kept[1:, 40:].sum() / 39
    assert rare_kept > 2 * hub_kept


def test_the_large_catalogue_knn_graph_from_an_ivf_index_finds_the_exact_neighbours() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(40, 16, generator=gen)
    feats = centres[torch.randint(0, 40, (4000,), generator=gen)] + 0.3 * torch.randn(4000, 16, generator=gen)
    feats[11] = 0.0
    exact = knn_graph(feats, k=5)
    approx = knn_graph(feats, k=5, exact_below=1000)
    edges = lambda g: set(zip(*g.nonzero(), strict=True))  # noqa: E731
    overlap = len(edges(exact) & edges(approx)) / len(edges(exact))
    assert overlap > 0.95, overlap
    assert approx[11].nnz == 0 and approx[:, 11].nnz == 0
    dense = approx.toarray()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-6)
