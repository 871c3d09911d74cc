"""LightGCN with a user-side feature, such as an embedded text profile of each user's taste (in the
spirit of RLMRec's profile-augmented user representations).

Two ways in, each with its weight (both may be on):

- `profile_weight` (added): a user's ego embedding is its free id vector plus that weight x a
  learned linear projection of its feature row (centred on the training users' mean, so the
  projection carries what sets a user apart rather than what every profile shares); the graph then
  smooths it as in LightGCN. A user with few interactions starts from what the profile says instead
  of from a near-random id vector, and a user with none at all gets `profile_vectors(features)`, the
  embedding an unconnected user has.
- `align_weight` (aligned, RLMRec's contrastive variant): an InfoNCE term over each batch's users
  pulls a user's final embedding towards a learned projection of its own profile and away from the
  other users' profiles; scoring is LightGCN's, the profile only shapes training.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch

from crossrec.data.features import FeatureSet
from crossrec.data.schema import Interactions
from crossrec.models.base import FeatureInput, Validator, check_user_features
from crossrec.models.graph import propagate_bipartite
from crossrec.models.lightgcn import LightGCN
from crossrec.models.neural import IdTables, _xavier


class ProfiledTables(torch.nn.Module):
    """Id tables, the (centred) user feature rows as a buffer, and the projection to the id space."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, features: np.ndarray, gen: torch.Generator
    ) -> None:
        super().__init__()
        self.ids = IdTables(n_users, n_items, dim, gen)
        mean = torch.from_numpy(features.mean(axis=0))
        self.register_buffer("feature_mean", mean)
        self.register_buffer("features", torch.from_numpy(features) - mean)
        self.project = torch.nn.Parameter(_xavier(features.shape[1], dim, gen))
        self.align = torch.nn.Parameter(_xavier(features.shape[1], dim, gen))


class ProfiledLightGCN(LightGCN):
    name = "ProfiledLightGCN"
    uses_user_features = True

    def __init__(
        self,
        profile_weight: float = 0.0,
        align_weight: float = 0.05,
        align_temperature: float = 0.2,
        n_layers: int = 3,
        **training: Any,
    ) -> None:
        super().__init__(n_layers=n_layers, **training)
        if profile_weight < 0 or align_weight < 0 or align_temperature <= 0:
            raise ValueError(
                "profile_weight and align_weight must be >= 0 and align_temperature > 0, got "
                f"{profile_weight}, {align_weight}, {align_temperature}"
            )
        self.profile_weight = profile_weight
        self.align_weight = align_weight
        self.align_temperature = align_temperature
        self._user_features: np.ndarray | None = None

    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
        *,
        user_features: np.ndarray | None = None,
    ) -> Self:
        """As every model's `fit`, plus `user_features` (n_users, d): required."""
        self._user_features = check_user_features(user_features, train.n_users)
        return super().fit(train, item_features, valid)

    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        super()._build(train, item_features, gen)  # the normalised graph
        features = self._user_features
        if features is None and self._saved_net is not None:  # restore(): the saved rows come back
            features = self._saved_net["net.features"].numpy() + self._saved_net["net.feature_mean"].numpy()
        features = check_user_features(features, train.n_users)
        return ProfiledTables(train.n_users, train.n_items, self.embedding_dim, features, gen)

    def _profiled(self) -> ProfiledTables:
        net = self._network()
        assert isinstance(net, ProfiledTables)
        return net

    def _profile_part(self, users: torch.Tensor | None = None) -> torch.Tensor:
        net = self._profiled()
        rows = net.features if users is None else net.features.index_select(0, users)
        return self.profile_weight * (rows @ net.project)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._adj is not None
        ids = self._ids()
        return propagate_bipartite(self._adj, ids.user + self._profile_part(), ids.item, self.n_layers)

    def _regulariser(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, item_all: torch.Tensor
    ) -> torch.Tensor:
        """LightGCN's L2 of the batch's ego embeddings, the projected profile part included."""
        base = super()._regulariser(users, pos, neg, item_all)
        return base + self._profile_part(users).pow(2).sum() / (2 * len(users))

    def _auxiliary_loss(
        self,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        user_all: torch.Tensor,
        item_all: torch.Tensor,
    ) -> torch.Tensor | float:
        """The alignment term: InfoNCE between the batch's users and their projected profiles."""
        if self.align_weight == 0:
            return 0.0
        batch = torch.unique(users)
        net = self._profiled()
        mine = torch.nn.functional.normalize(user_all.index_select(0, batch), dim=1)
        said = torch.nn.functional.normalize(net.features.index_select(0, batch) @ net.align, dim=1)
        logits = mine @ said.T / self.align_temperature
        target = torch.arange(len(batch))
        loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(
            logits.T, target
        )
        return self.align_weight * loss / 2

    # -- user features after training --------------------------------------------------------
    def set_user_features(self, user_features: np.ndarray) -> None:
        """Replace the feature rows (same users, same width): e.g. profiles rewritten since training.
        Scores follow at once; the id vectors and projection stay as trained."""
        net = self._profiled()
        rows = check_user_features(user_features, self.n_users, net.features.shape[1])
        with torch.no_grad():
            net.features.copy_(torch.from_numpy(rows) - net.feature_mean)
        self._cache = None

    def profile_vectors(self, user_features: np.ndarray) -> np.ndarray:
        """User vectors (n, d) from feature rows alone, for users with no interactions, comparable with
        `item_vectors()`. With the added profile: the final embedding of an unconnected user (the
        projected profile, averaged over the n_layers + 1 layers as LightGCN does). Aligned only: the
        alignment's projection of the profile, scaled to the median length of the trained users'
        vectors (the alignment matched directions, not lengths)."""
        net = self._profiled()
        rows = check_user_features(user_features, len(user_features), net.features.shape[1])
        centred = torch.from_numpy(rows) - net.feature_mean
        with torch.no_grad():
            if self.profile_weight > 0 or self.align_weight == 0:
                return (self.profile_weight * (centred @ net.project) / (self.n_layers + 1)).numpy()
            direction = torch.nn.functional.normalize(centred @ net.align, dim=1)
            length = torch.as_tensor(self.user_vectors()).norm(dim=1).median()
            return (direction * length).numpy()
