"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, no transforms, no
non-linearities; the final embedding is the mean of the layer embeddings."""

from __future__ import annotations

from typing import Any

import torch

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.graph import normalized_adjacency, propagate_bipartite, to_torch_csr
from crossrec.models.neural import IdTables, NeuralRecommender


class LightGCN(NeuralRecommender):
    name = "LightGCN"

    def __init__(
        self,
        n_layers: int = 3,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_layers = n_layers
        self._adj: torch.Tensor | None = None

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        self._adj = to_torch_csr(normalized_adjacency(train))
        return IdTables(train.n_users, train.n_items, self.embedding_dim, gen)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._adj is not None
        ids = self._ids()
        return propagate_bipartite(self._adj, ids.user, ids.item, self.n_layers)
