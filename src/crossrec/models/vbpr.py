"""VBPR (He & McAuley 2016): matrix factorisation plus a content term.

score(u, i) = gamma_u . gamma_i + theta_u . E f_i, where f_i are the item's frozen pretrained
features and E a learned projection. The content term is the fusion of any number of modalities,
so items without interactions still get a meaningful half of their vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput
from crossrec.models.fusion import ContentEncoder, check_fusion, select_features
from crossrec.models.neural import IdTables, NeuralRecommender, squared_norm_of_rows


class VBPR(NeuralRecommender):
    """User vectors are [gamma_u, theta_u] (2 x embedding_dim); item vectors [gamma_i, E f_i]."""

    name = "VBPR"
    can_embed_content = True

    def __init__(
        self,
        modalities: Sequence[str] | None = None,
        fusion: str = "concat",
        **training: Any,
    ) -> None:
        super().__init__(**training)
        check_fusion(fusion)
        self.modalities = None if modalities is None else list(modalities)
        self.fusion = fusion

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        features, present = select_features(item_features, self.modalities, train.n_items, self.name)
        d = self.embedding_dim
        return torch.nn.ModuleDict(
            {
                "ids": IdTables(train.n_users, train.n_items, d, gen, user_dim=2 * d),
                "content": ContentEncoder(features, d, self.fusion, present=present),
            }
        )

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._ids()
        return ids.user, torch.cat([ids.item, self._network()["content"]()], dim=1)

    def embed_items(self, features: FeatureInput) -> np.ndarray:
        """[0, E f] for new items: no collaborative half yet, the content half from the learned map."""
        content = self._network()["content"]
        inputs, present = select_features(features, content.names, None, self.name)
        with torch.no_grad():
            content.eval()
            half = content([inputs[n] for n in content.names], present)
        return torch.cat([torch.zeros_like(half), half], dim=1).numpy()

    def _regulariser(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, item_all: torch.Tensor
    ) -> torch.Tensor:
        """The id tables' L2 plus that of the batch's content vectors: left free, the projection
        grows until the content half drowns the collaborative one (E is regularised in VBPR too)."""
        content = item_all[:, self.embedding_dim :]  # the content half _propagate appended
        extra = content.index_select(0, pos).pow(2).sum()
        extra = extra + squared_norm_of_rows(content, neg) * self.negative_weight(users, neg)
        return super()._regulariser(users, pos, neg, item_all) + extra / (2 * len(users))
