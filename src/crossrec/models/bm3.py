"""BM3 (Zhou et al. 2023, "Bootstrap latent representations for multi-modal recommendation").

Self-supervised and negative-free: LightGCN embeddings (online) are asked to predict dropout-
perturbed, gradient-stopped copies of themselves (targets) across the user-item edge, and each
modality's projected features are asked to predict the item's target too (inter-modality) and a
perturbed copy of themselves (intra-modality). No negative sampling; scores are the predictor's
user and item outputs, so the model stays a dot-product (ANN-servable) recommender.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.fusion import ModalityProjections, select_features
from crossrec.models.graph import normalized_adjacency, propagate_bipartite, to_torch_csr
from crossrec.models.neural import IdTables, NeuralRecommender


def _cosine_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(NeuralRecommender):
    name = "BM3"
    samples_negatives = False  # negative-free: the trainer draws none

    default_overrides: ClassVar[dict[str, Any]] = {"reg_weight": 0.1}

    def __init__(
        self,
        n_layers: int = 1,
        dropout: float = 0.3,
        cl_weight: float = 2.0,
        modalities: Sequence[str] | None = None,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        if not 0 <= dropout < 1 or cl_weight < 0 or n_layers < 0:
            raise ValueError("dropout must be in [0, 1), cl_weight >= 0 and n_layers >= 0")
        self.n_layers = n_layers
        self.dropout = dropout
        self.cl_weight = cl_weight
        self.modalities = None if modalities is None else list(modalities)
        self._adj: torch.Tensor | None = None
        self._gen = torch.Generator()

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        features, _ = select_features(item_features, self.modalities, train.n_items, self.name)
        self._adj = to_torch_csr(normalized_adjacency(train))
        self._gen = gen  # the targets' dropout draws from the seeded generator, not the global one
        d = self.embedding_dim
        net = torch.nn.ModuleDict(
            {
                "ids": IdTables(train.n_users, train.n_items, d, gen),
                "predictor": torch.nn.Linear(d, d),
                "modalities": ModalityProjections(features, d),
            }
        )
        return net

    def _online(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._adj is not None
        ids = self._ids()
        return propagate_bipartite(self._adj, ids.user, ids.item, self.n_layers)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        predictor = self._network()["predictor"]
        users, items = self._online()
        return predictor(users), predictor(items)

    def _perturb(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout of a target view."""
        keep = 1 - self.dropout
        return x * (torch.rand(x.shape, generator=self._gen) < keep) / keep

    def batch_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, values: torch.Tensor | None
    ) -> torch.Tensor:
        net = self._network()
        predictor = net["predictor"]
        user_all, item_all = self._online()
        u, i = user_all.index_select(0, users), item_all.index_select(0, pos)
        with torch.no_grad():
            u_target, i_target = self._perturb(u), self._perturb(i)
        loss = _cosine_loss(predictor(u), i_target) + _cosine_loss(predictor(i), u_target)
        modal = torch.zeros(())
        for feats in net["modalities"](rows=pos):
            with torch.no_grad():
                feats_target = self._perturb(feats)
            online = predictor(feats)
            modal = modal + _cosine_loss(online, i_target) + _cosine_loss(online, feats_target)
        reg = (u.pow(2).sum() + i.pow(2).sum()) / (2 * len(users))
        return loss + self.reg_weight * reg + self.cl_weight * modal
