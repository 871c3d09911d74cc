"""The one Recommender contract: fit on training interactions, score users against every item.

Ranking, evaluation, serving and ANN search are built on `score` (and on `user_vectors` /
`item_vectors` when scores are dot products), so a new model only implements these.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.io import atomic_path


class Validator(Protocol):
    """Scores a model on held-out data during training; `monitor` names the metric to maximise."""

    monitor: str

    def __call__(self, model: Recommender) -> dict[str, float]: ...


class Recommender(ABC):
    """Base class: explicit constructor parameters (as in scikit-learn), `fit`, `score`."""

    name: ClassVar[str] = "recommender"

    def __init__(self) -> None:
        self.n_users = 0
        self.n_items = 0
        self.history: list[dict[str, float]] = []

    # -- the contract -------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: Interactions,
        item_features: dict[str, np.ndarray] | None = None,
        valid: Validator | None = None,
    ) -> Self:
        """Learn from `train`; `valid`, when given, drives early stopping and model selection."""

    @abstractmethod
    def score(self, users: np.ndarray) -> torch.Tensor:
        """Scores of `users` (indices) for every item: a float32 tensor (len(users), n_items)."""

    @property
    def predicts_ratings(self) -> bool:
        """True when `score` estimates explicit rating values (then RMSE and MAE are meaningful)."""
        return False

    def user_vectors(self) -> np.ndarray | None:
        """User embeddings when `score` is their dot product with `item_vectors`, else None."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        return None

    # -- parameters and persistence ----------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, read back from attributes of the same name."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def _state(self) -> dict[str, torch.Tensor]:
        """Learned state as named tensors (weights_only-safe)."""
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `_state` returned."""

    def save(self, path: str | Path) -> Path:
        payload = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.get_params(),
            "shape": [self.n_users, self.n_items],
            "state": self._state(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        import importlib

        payload = torch.load(path, weights_only=True)
        module_name, _, qualname = payload["class"].rpartition(".")
        model_cls = getattr(importlib.import_module(module_name), qualname)
        if not issubclass(model_cls, Recommender):
            raise TypeError(f"{payload['class']} is not a Recommender")
        model = model_cls(**payload["params"])
        model.n_users, model.n_items = (int(x) for x in payload["shape"])
        model._load_state(payload["state"])
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class EmbeddingRecommender(Recommender):
    """A model whose score is the dot product of user and item vectors (ANN-servable)."""

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings; subclasses may cache them between parameter updates."""
        raise NotImplementedError

    def score(self, users: np.ndarray) -> torch.Tensor:
        user_emb, item_emb = self._embeddings()
        idx = torch.as_tensor(np.asarray(users), dtype=torch.long)
        return user_emb[idx] @ item_emb.T

    def user_vectors(self) -> np.ndarray:
        return self._embeddings()[0].detach().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        return self._embeddings()[1].detach().cpu().numpy()
