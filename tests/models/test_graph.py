from __future__ import annotations

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.graph import normalized_adjacency, propagate, to_torch_csr


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
