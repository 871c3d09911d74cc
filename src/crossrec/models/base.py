"""The one Recommender contract: fit on training interactions, score users against every item.

Ranking, evaluation, serving and ANN search are built on `score` (and on `user_vectors` /
`item_vectors` when scores are dot products), so a new model only implements these. Two optional
capabilities serve live traffic and cold start without retraining, each declared by a flag:
`can_fold_in` (a user vector from an interaction history, as implicit's recalculate_user does for
ALS) and `can_embed_content` (an item vector from item features, for an item the model never saw).
A third flag, `uses_user_features`, marks a model whose `fit` also takes `user_features`: one float32
row per user index (e.g. an embedded text profile of the user's taste, crossrec.llm.profiles).
"""

from __future__ import annotations

import inspect
import io
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.features import ItemFeatures
from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.io import atomic_path

FeatureInput = Mapping[str, ItemFeatures | np.ndarray]


class Validator(Protocol):
    """Scores a model on held-out data during training; `monitor` names the metric to maximise."""

    monitor: str

    def __call__(self, model: Recommender) -> dict[str, float]: ...


class Recommender(ABC):
    """Base class: explicit constructor parameters (as in scikit-learn), `fit`, `score`."""

    name: ClassVar[str] = "recommender"
    # Changes to the defaults of parameters a base class defines (e.g. a model's preferred loss).
    default_overrides: ClassVar[dict[str, Any]] = {}
    can_fold_in: ClassVar[bool] = False
    can_embed_content: ClassVar[bool] = False
    # When True, `fit(..., user_features=matrix)` takes a (n_users, d) float32 matrix of user-side
    # features (zero rows where a user has none) and `set_user_features` swaps it before scoring.
    uses_user_features: ClassVar[bool] = False

    def __init__(self) -> None:
        self.n_users = 0
        self.n_items = 0
        self.history: list[dict[str, float]] = []

    # -- the contract -------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
    ) -> Self:
        """Learn from `train`; `valid`, when given, drives early stopping and model selection.
        `item_features` are ItemFeatures by name (bare matrices are accepted and converted)."""

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

    def fold_in(self, histories: sp.csr_matrix, item_vectors: np.ndarray | None = None) -> np.ndarray:
        """User vectors (n, d) for the interaction histories in the rows of `histories` (n, n_items),
        without retraining; scores are their dot products with `item_vectors()`. `item_vectors`
        replaces the model's own (a catalogue that grew after training: its rows match the columns
        of `histories`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold a history into a user vector")

    def embed_items(self, features: FeatureInput) -> np.ndarray:
        """Item vectors (n, d) for new items from their features (the same names and widths the
        model was fitted with), comparable with `item_vectors()`."""
        raise NotImplementedError(f"{type(self).__name__} cannot map item content to an item vector")

    # -- parameters and persistence ----------------------------------------------------------
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every constructor parameter and its default, from this class and the bases it passes
        parameters to (a model declares only its own; the trainer's are defined once)."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    out[p.name] = p.default
        out.update(cls.default_overrides)
        return out

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, read back from attributes of the same name."""
        return {p: getattr(self, p) for p in self.param_defaults()}

    def _state(self) -> dict[str, torch.Tensor]:
        """Learned state as named tensors (weights_only-safe)."""
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `_state` returned."""

    def _payload(self) -> dict[str, Any]:
        from crossrec.models import MODELS

        return {
            "model": MODELS.name_of(type(self)),
            "params": self.get_params(),
            "shape": [self.n_users, self.n_items],
            "state": self._state(),
        }

    def save(self, path: str | Path) -> Path:
        """Saved under its registry name, so `load` never imports a path read from a file."""
        with atomic_path(path) as tmp:
            torch.save(self._payload(), tmp)
        return Path(path)

    def to_bytes(self) -> bytes:
        """The saved form in memory (what a unit of work sends back from another process)."""
        buffer = io.BytesIO()
        torch.save(self._payload(), buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, source: str | Path | bytes) -> Recommender:
        """A saved model (a file, or `to_bytes` output); its class comes from the model registry."""
        from crossrec.models import MODELS

        where = "model bytes" if isinstance(source, bytes) else str(source)
        payload = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, weights_only=True)
        name = payload.get("model")
        if not isinstance(name, str) or name not in MODELS:
            raise ConfigError(f"{where}: names no registered model ({name!r}); known: {', '.join(MODELS)}")
        model_cls = MODELS[name]
        if not issubclass(model_cls, cls):
            raise ConfigError(f"{where}: holds a {model_cls.__name__}, not a {cls.__name__}")
        model = model_cls(**payload["params"])
        model.n_users, model.n_items = (int(x) for x in payload["shape"])
        model._load_state(payload["state"])
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def check_user_features(matrix: np.ndarray | None, n_users: int, width: int | None = None) -> np.ndarray:
    """A user feature matrix as float32, one finite row per user (the rows are user indices, so a
    wrong row count would misalign users silently)."""
    if matrix is None:
        raise ConfigError("this model needs user_features: a (n_users, d) matrix, e.g. embedded profiles")
    mat = np.asarray(matrix, dtype=np.float32)
    if mat.ndim != 2 or mat.shape[0] != n_users:
        raise ConfigError(f"user_features must be ({n_users}, d), got shape {mat.shape}")
    if width is not None and mat.shape[1] != width:
        raise ConfigError(f"user_features must have {width} columns (as at fit), got {mat.shape[1]}")
    if not np.isfinite(mat).all():
        raise ConfigError("user_features hold NaN or infinity")
    return mat


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
