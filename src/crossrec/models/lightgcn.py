"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, no transforms, no
non-linearities; the final embedding is the mean of the layer embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.graph import normalized_adjacency, propagate_bipartite, to_torch_csr
from crossrec.models.trainer import IdTables, NeuralRecommender, trainer_params


class LightGCN(NeuralRecommender):
    name = "LightGCN"

    def __init__(
        self,
        embedding_dim: int = 64,
        n_layers: int = 3,
        loss: str = "bpr",
        n_negatives: int = 1,
        shared_negatives: bool = False,
        temperature: float = 1.0,
        lr: float = 1e-3,
        reg_weight: float = 1e-4,
        batch_size: int = 2048,
        epochs: int = 100,
        patience: int = 10,
        eval_every: int = 1,
        seed: int = 0,
        quiet: bool = True,
    ) -> None:
        super().__init__(**trainer_params(locals()))
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_layers = n_layers
        self._adj: torch.Tensor | None = None

    def _build(
        self, train: Interactions, item_features: Mapping[str, np.ndarray], gen: torch.Generator
    ) -> torch.nn.Module:
        self._adj = to_torch_csr(normalized_adjacency(train))
        return IdTables(train.n_users, train.n_items, self.embedding_dim, gen)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._adj is not None
        ids = self._ids()
        return propagate_bipartite(self._adj, ids.user, ids.item, self.n_layers)
