"""A FREEDOM-like model (Zhou & Shen 2023): frozen modality kNN item graphs beside the interaction graph.

Item ids are smoothed twice: over the user-item graph (LightGCN, with degree-sensitive edge pruning
while training) and over item-item kNN graphs built once from each modality's frozen features. The
item-item part is what reaches cold items: an item nobody has consumed still inherits the embeddings
of its content neighbours. Each modality also gets a projection trained with its own ranking loss,
which shapes the id space by content.

The modality graphs are fused by `fusion`: `mean` sums the normalised graphs into one (FREEDOM's
own choice, one sparse product per layer); `concat`, `weighted` and `gated` propagate over each
graph separately and combine the results with `ModalityFusion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput
from crossrec.models.fusion import FUSIONS, ModalityFusion, ModalityProjections, select_features
from crossrec.models.graph import (
    EXACT_KNN_BELOW,
    degree_sensitive_prune,
    knn_graph,
    normalized_adjacency,
    power_propagate,
    propagate_bipartite,
    to_torch_csr,
)
from crossrec.models.losses import bpr_loss
from crossrec.models.neural import IdTables, NeuralRecommender


class FREEDOM(NeuralRecommender):
    name = "FREEDOM"
    can_embed_content = True

    default_overrides: ClassVar[dict[str, Any]] = {"reg_weight": 0.0}

    def __init__(
        self,
        n_layers: int = 2,
        n_item_layers: int = 1,
        knn_k: int = 10,
        edge_keep: float = 0.2,
        modalities: Sequence[str] | None = None,
        fusion: str = "mean",
        modality_loss_weight: float = 1e-3,
        knn_exact_below: int = EXACT_KNN_BELOW,
        **training: Any,
    ) -> None:
        """`knn_exact_below`: catalogues this large and larger get their kNN graphs from an IVF
        index instead of exactly (see `knn_graph`)."""
        super().__init__(**training)
        if fusion not in ("mean", *FUSIONS):
            raise ValueError(f"unknown fusion '{fusion}'; choose one of mean, {', '.join(FUSIONS)}")
        if n_layers < 0 or n_item_layers < 1 or knn_k < 1 or modality_loss_weight < 0:
            raise ValueError("n_layers >= 0, n_item_layers >= 1, knn_k >= 1, modality_loss_weight >= 0")
        if not 0 < edge_keep <= 1:
            raise ValueError(f"edge_keep must be in (0, 1], got {edge_keep}")
        self.n_layers = n_layers
        self.n_item_layers = n_item_layers
        self.knn_k = knn_k
        self.edge_keep = edge_keep
        self.modalities = None if modalities is None else list(modalities)
        self.fusion = fusion
        self.modality_loss_weight = modality_loss_weight
        self.knn_exact_below = knn_exact_below
        self._r: sp.csr_matrix | None = None
        self._adj: torch.Tensor | None = None
        self._train_adj: torch.Tensor | None = None
        self._item_graphs: list[torch.Tensor] = []
        self._catalogue: list[tuple[torch.Tensor, np.ndarray]] = []

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        features, _ = select_features(item_features, self.modalities, train.n_items, self.name)
        self._r = train.to_csr(binary=True)
        self._adj = to_torch_csr(normalized_adjacency(self._r))
        self._train_adj = self._adj
        graphs = [knn_graph(f, self.knn_k, exact_below=self.knn_exact_below) for f in features.values()]
        # What mapping new content needs: each modality's unit features and graph degrees.
        self._catalogue = [
            (f, np.asarray(g.astype(bool).sum(axis=1)).ravel())
            for f, g in zip(features.values(), graphs, strict=True)
        ]
        if self.fusion == "mean":
            graphs = [sum(graphs[1:], graphs[0]) / len(graphs)]
        self._item_graphs = [to_torch_csr(g) for g in graphs]
        d = self.embedding_dim
        modules: dict[str, torch.nn.Module] = {
            "ids": IdTables(train.n_users, train.n_items, d, gen),
            "modalities": ModalityProjections(features, d),
        }
        if self.fusion != "mean":
            modules["fusion"] = ModalityFusion(len(graphs), d, self.fusion)
        return torch.nn.ModuleDict(modules)

    def _on_epoch_start(self, rng: np.random.Generator) -> None:
        assert self._r is not None
        if self.edge_keep < 1:
            pruned = degree_sensitive_prune(self._r, self.edge_keep, rng)
            self._train_adj = to_torch_csr(normalized_adjacency(pruned))

    def _item_side(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Item id embeddings propagated over each modality graph, then fused."""
        parts = [power_propagate(graph, item_ids, self.n_item_layers) for graph in self._item_graphs]
        net = self._network()
        return parts[0] if self.fusion == "mean" else net["fusion"](parts)

    def embed_items(self, features: FeatureInput) -> np.ndarray:
        """A new item joins each modality graph through its `knn_k` nearest catalogue items, with the
        graph's symmetric weights 1 / sqrt(k * degree); it has no interactions, so its user-item part
        is zero and its vector is the item side alone: the neighbours' propagated id embeddings."""
        net = self._network()
        names = net["modalities"].names
        new, present = select_features(features, names, None, self.name)
        ids = self._ids().item
        with torch.no_grad():
            parts = []
            for m, ((catalogue, degree), name) in enumerate(zip(self._catalogue, names, strict=True)):
                # The earlier item layers run over the graph the model propagates on (the mean graph
                # for `mean` fusion), so only the new item's own row is added.
                graph = self._item_graphs[0 if self.fusion == "mean" else m]
                smoothed = power_propagate(graph, ids, self.n_item_layers - 1)
                sims = new[name] @ catalogue.T
                sims[:, torch.from_numpy(degree == 0)] = -torch.inf
                k = min(self.knn_k, catalogue.shape[0])
                top = sims.topk(k, dim=1).indices
                weights = 1.0 / torch.sqrt(k * torch.from_numpy(np.maximum(degree, 1)).float()[top])
                part = (weights.unsqueeze(-1) * smoothed[top]).sum(1)
                parts.append(part * present[:, names.index(name)].unsqueeze(1))
            if self.fusion == "mean":
                return (sum(parts[1:], parts[0]) / len(parts)).numpy()
            return net["fusion"](parts).numpy()

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._ids()
        adj = self._train_adj if self._network().training else self._adj
        assert adj is not None
        users, items = propagate_bipartite(adj, ids.user, ids.item, self.n_layers)
        return users, items + self._item_side(ids.item)

    def _auxiliary_loss(
        self,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        user_all: torch.Tensor,
        item_all: torch.Tensor,
    ) -> torch.Tensor | float:
        """Each modality's projected features ranked for the batch's users (FREEDOM's mf_v/mf_t)."""
        if self.modality_loss_weight == 0 or self.loss == "mse":
            return 0.0
        net = self._network()
        u = user_all.index_select(0, users)
        total = torch.zeros(())
        mask = self.negative_mask(pos, neg)
        # Project every item once, then pick rows: cheaper than projecting B x n_negatives rows.
        for projected in net["modalities"]():
            p = projected.index_select(0, pos)
            n = projected.index_select(0, neg.reshape(-1)).view(*neg.shape, -1)
            total = total + bpr_loss(u, p, n, mask)
        return self.modality_loss_weight * total
