"""A language-embedding recommender in the spirit of AlphaRec (Sheng et al. 2025, "Language
representations can be what recommenders need").

No id embeddings at all: an item is a learned map (an MLP) of its frozen pretrained embeddings, a
user the same map of the mean embedding of what they consumed; LightGCN propagation follows and
scores are cosine similarities trained with a sampled-softmax (InfoNCE) loss and a temperature.
Because an item's vector comes from its content, the model scores items that had no interactions
and users it never trained on. Any modality or several (fused) can stand in for the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput
from crossrec.models.fusion import ContentEncoder, check_fusion, select_features
from crossrec.models.graph import normalized_adjacency, propagate_bipartite, to_torch_csr
from crossrec.models.neural import NeuralRecommender


class AlphaRec(NeuralRecommender):
    name = "AlphaRec"
    can_embed_content = True

    default_overrides: ClassVar[dict[str, Any]] = {
        "loss": "softmax",
        "n_negatives": 64,
        "temperature": 0.15,
        "lr": 5e-4,
        "reg_weight": 0.0,
    }

    def __init__(
        self,
        hidden_dim: int = 256,
        n_layers: int = 2,
        modalities: Sequence[str] | None = None,
        fusion: str = "weighted",
        **training: Any,
    ) -> None:
        super().__init__(**training)
        check_fusion(fusion)
        if hidden_dim < 1 or n_layers < 0:
            raise ValueError(f"hidden_dim must be >= 1 and n_layers >= 0, got {hidden_dim}, {n_layers}")
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.modalities = None if modalities is None else list(modalities)
        self.fusion = fusion
        self._adj: torch.Tensor | None = None

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        features, present = select_features(item_features, self.modalities, train.n_items, self.name)
        self._adj = to_torch_csr(normalized_adjacency(train))
        encoder = ContentEncoder(
            features, self.embedding_dim, self.fusion, hidden=self.hidden_dim, present=present
        )
        # A user's input is the mean of their items' features, per modality (AlphaRec's user init).
        r = train.to_csr(binary=True)
        mean = r.multiply(1.0 / np.maximum(r.sum(axis=1), 1)).tocsr().astype(np.float32)
        for i, f in enumerate(features.values()):
            user_input = torch.from_numpy(np.asarray(mean @ f.numpy()))
            encoder.register_buffer(f"user_input_{i}", user_input, persistent=False)
        return encoder

    def _encoder(self) -> ContentEncoder:
        net = self._network()
        assert isinstance(net, ContentEncoder)
        return net

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._adj is not None
        enc = self._encoder()
        user_inputs = [getattr(enc, f"user_input_{i}") for i in range(len(enc.names))]
        users = enc(user_inputs, (torch.stack([x.abs().sum(1) > 0 for x in user_inputs], 1)))
        users, items = propagate_bipartite(self._adj, users, enc(), self.n_layers)
        return F.normalize(users, dim=1), F.normalize(items, dim=1)

    def embed_items(self, features: FeatureInput) -> np.ndarray:
        """The item map applied to new content. An item without interactions is an isolated node of
        the graph, whose propagated vector is its own input scaled by 1 / (n_layers + 1): after the
        cosine normalisation that is the map's output itself, as for cold items in training."""
        enc = self._encoder()
        inputs, present = select_features(features, enc.names, None, self.name)
        with torch.no_grad():
            enc.eval()
            items = enc([inputs[n] for n in enc.names], present)
        return F.normalize(items, dim=1).numpy()

    def _regulariser(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, item_all: torch.Tensor
    ) -> torch.Tensor:
        """No id tables to shrink; the MLP is small and early stopping bounds it."""
        return torch.zeros(())
