"""Most popular items: the floor every personalised model must clear."""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput, Recommender, Validator


class MostPop(Recommender):
    name = "MostPop"

    def __init__(self) -> None:
        super().__init__()
        self._popularity = torch.zeros(0)

    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
    ) -> Self:
        self.n_users, self.n_items = train.n_users, train.n_items
        self._popularity = torch.as_tensor(train.item_counts(), dtype=torch.float32)
        return self

    def score(self, users: np.ndarray) -> torch.Tensor:
        return self._popularity.expand(len(users), -1).clone()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"popularity": self._popularity}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._popularity = state["popularity"]
