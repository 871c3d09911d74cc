"""A language-embedding recommender in the spirit of AlphaRec (Sheng et al. 2025, "Language
representations can be what recommenders need").

No id embeddings at all: an item is a learned map (an MLP) of its frozen pretrained embeddings, a
user the same map of the mean embedding of what they consumed; LightGCN propagation follows and
scores are cosine similarities trained with a sampled-softmax (InfoNCE) loss and a temperature.
Because an item's vector comes from its content, the model scores items that had no interactions
and users it never trained on. Any modality or several (fused) can stand in for the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from crossrec.data.schema import Interactions
from crossrec.models.fusion import ContentEncoder, check_fusion, select_features
from crossrec.models.graph import normalized_adjacency, propagate_bipartite, to_torch_csr
from crossrec.models.trainer import NeuralRecommender, trainer_params


class AlphaRec(NeuralRecommender):
    name = "AlphaRec"

    def __init__(
        self,
        embedding_dim: int = 64,
        hidden_dim: int = 256,
        n_layers: int = 2,
        modalities: Sequence[str] | None = None,
        fusion: str = "weighted",
        loss: str = "softmax",
        n_negatives: int = 64,
        shared_negatives: bool = False,
        temperature: float = 0.15,
        lr: float = 5e-4,
        reg_weight: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 100,
        patience: int = 10,
        eval_every: int = 1,
        seed: int = 0,
        quiet: bool = True,
    ) -> None:
        super().__init__(**trainer_params(locals()))
        check_fusion(fusion)
        if hidden_dim < 1 or n_layers < 0:
            raise ValueError(f"hidden_dim must be >= 1 and n_layers >= 0, got {hidden_dim}, {n_layers}")
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.modalities = None if modalities is None else list(modalities)
        self.fusion = fusion
        self._adj: torch.Tensor | None = None

    def _build(
        self, train: Interactions, item_features: Mapping[str, np.ndarray], gen: torch.Generator
    ) -> torch.nn.Module:
        features = select_features(item_features, self.modalities, train.n_items, self.name)
        self._adj = to_torch_csr(normalized_adjacency(train))
        encoder = ContentEncoder(features, self.embedding_dim, self.fusion, hidden=self.hidden_dim)
        # A user's input is the mean of their items' features, per modality (AlphaRec's user init).
        r = train.to_csr(binary=True)
        mean = r.multiply(1.0 / np.maximum(r.sum(axis=1), 1)).tocsr().astype(np.float32)
        for i, f in enumerate(features.values()):
            encoder.register_buffer(f"user_input_{i}", torch.from_numpy(np.asarray(mean @ f.numpy())))
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

    def _regulariser(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, item_all: torch.Tensor
    ) -> torch.Tensor:
        """No id tables to shrink; the MLP is small and early stopping bounds it."""
        return torch.zeros(())
