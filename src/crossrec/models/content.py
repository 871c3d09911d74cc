"""Content kNN: a user is the mean of the content vectors of what they consumed; items are ranked by
cosine to that profile. Needs no interactions on the item side, so it ranks cold items too."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.features import as_feature_set
from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.models.base import EmbeddingRecommender, FeatureInput, Validator


class ContentKNN(EmbeddingRecommender):
    name = "ContentKNN"
    can_fold_in = True
    can_embed_content = True

    def __init__(self, feature: str = "text") -> None:
        super().__init__()
        self.feature = feature
        self._users = torch.zeros(0)
        self._items = torch.zeros(0)

    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
    ) -> Self:
        features = as_feature_set(item_features)
        if self.feature not in features:
            known = ", ".join(sorted(features)) or "none (add an `encode` section to the config)"
            raise ConfigError(f"ContentKNN needs item feature '{self.feature}'; the run has: {known}")
        matrix = features[self.feature].matrix
        if matrix.shape[0] != train.n_items:
            raise ConfigError(
                f"feature '{self.feature}' has {matrix.shape[0]} rows for {train.n_items} items"
            )
        self.n_users, self.n_items = train.n_users, train.n_items
        # Items without content keep a zero vector: they score 0 rather than a made-up similarity.
        items = torch.nn.functional.normalize(torch.as_tensor(matrix), dim=1)
        self._users = torch.from_numpy(self._profiles(train.to_csr(), items))
        self._items = items
        return self

    def fold_in(self, histories: sp.csr_matrix, item_vectors: np.ndarray | None = None) -> np.ndarray:
        """Exact: the normalised mean of the history's content vectors, as `fit` builds profiles."""
        items = self._items if item_vectors is None else torch.as_tensor(item_vectors)
        return self._profiles(sp.csr_matrix(histories, dtype=np.float32), items)

    def embed_items(self, features: FeatureInput) -> np.ndarray:
        matrix = as_feature_set(features)[self.feature].matrix
        return torch.nn.functional.normalize(torch.as_tensor(matrix), dim=1).numpy()

    @staticmethod
    def _profiles(histories: sp.csr_matrix, items: torch.Tensor) -> np.ndarray:
        binary = (histories > 0).astype(np.float32)
        means = binary.multiply(1.0 / np.maximum(binary.sum(1), 1)).tocsr()
        profile = torch.as_tensor(np.asarray(means @ items.numpy(), dtype=np.float32))
        return torch.nn.functional.normalize(profile, dim=1).numpy()

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._users, self._items

    def _state(self) -> dict[str, torch.Tensor]:
        return {"users": self._users, "items": self._items}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._users, self._items = state["users"], state["items"]
