"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, no transforms, no
non-linearities; the final embedding is the mean of the layer embeddings."""

from __future__ import annotations

import torch

from crossrec.data.schema import Interactions
from crossrec.models.graph import normalized_adjacency, propagate, to_torch_csr
from crossrec.models.trainer import PairwiseModel


class LightGCN(PairwiseModel):
    name = "LightGCN"

    def __init__(
        self,
        embedding_dim: int = 64,
        n_layers: int = 3,
        lr: float = 1e-3,
        reg_weight: float = 1e-4,
        batch_size: int = 2048,
        epochs: int = 100,
        patience: int = 10,
        eval_every: int = 1,
        seed: int = 0,
        quiet: bool = True,
    ) -> None:
        super().__init__(
            embedding_dim=embedding_dim,
            lr=lr,
            reg_weight=reg_weight,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            eval_every=eval_every,
            seed=seed,
            quiet=quiet,
        )
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_layers = n_layers
        self._adj: torch.Tensor | None = None

    def _prepare(self, train: Interactions) -> None:
        self._adj = to_torch_csr(normalized_adjacency(train))

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._adj is None:
            raise RuntimeError("LightGCN has no graph: fit it (a loaded model scores from its saved state)")
        ego = torch.cat([self.user_embedding, self.item_embedding])
        final = propagate(self._adj, ego, self.n_layers)
        return final[: self.n_users], final[self.n_users :]

    def _state(self) -> dict[str, torch.Tensor]:
        """Ego tables and the propagated embeddings, so a loaded model scores without the graph."""
        user, item = self._embeddings()
        return {**super()._state(), "user_final": user, "item_final": item}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        self._cache = (self._versions(), state["user_final"].clone(), state["item_final"].clone())
