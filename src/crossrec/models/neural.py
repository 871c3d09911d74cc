"""The base class of every trained embedding model: a torch network whose final user and item
embeddings score by dot product.

A model only says how it builds its network from the training data (`_build`) and how the network
turns into final user and item embeddings (`_propagate`); `models.training.train_model` is the one
loop that trains them all. The trainer's parameters (loss, negatives, lr, epochs, ...) are defined
once, on `NeuralRecommender.__init__`; a model adds its own and may change a default through
`default_overrides` (AlphaRec trains with a sampled softmax by default, for example).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.features import FeatureSet, as_feature_set
from crossrec.data.schema import Interactions
from crossrec.models.base import EmbeddingRecommender, FeatureInput, Validator
from crossrec.models.fold_in import ridge_fold_in, softmax_fold_in
from crossrec.models.losses import LOSSES, mse_loss, ranking_loss
from crossrec.models.training import train_model


class IdTables(torch.nn.Module):
    """Free user and item embedding tables (Xavier-uniform, as MMRec initialises its models)."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, gen: torch.Generator, user_dim: int | None = None
    ) -> None:
        super().__init__()
        self.user = torch.nn.Parameter(_xavier(n_users, user_dim or dim, gen))
        self.item = torch.nn.Parameter(_xavier(n_items, dim, gen))


class RatingBias(torch.nn.Module):
    """Global mean plus per-user and per-item offsets for explicit ratings (Koren et al. 2009).

    They enter as two extra embedding columns, [u, b_u + mean, 1] . [i, 1, b_i], so a rating model
    still scores by a dot product and serves from the same ANN index as any other.
    """

    def __init__(self, n_users: int, n_items: int, mean: float) -> None:
        super().__init__()
        self.user = torch.nn.Parameter(torch.zeros(n_users))
        self.item = torch.nn.Parameter(torch.zeros(n_items))
        self.register_buffer("mean", torch.tensor(float(mean)))

    def l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user.index_select(0, users).pow(2).sum() + self.item.index_select(0, items).pow(2).sum()

    def extend(
        self, user_rows: torch.Tensor, item_rows: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of `users` and `items` with the two bias columns appended."""
        u_bias = self.user.index_select(0, users) + self.mean
        i_bias = self.item.index_select(0, items)
        u_one, i_one = torch.ones_like(u_bias), torch.ones_like(i_bias)
        return (
            torch.cat([user_rows, u_bias[:, None], u_one[:, None]], dim=1),
            torch.cat([item_rows, i_one[:, None], i_bias[:, None]], dim=1),
        )


def _xavier(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    table = torch.empty(rows, dim)
    torch.nn.init.xavier_uniform_(table, generator=gen)
    return table


@dataclass(frozen=True)
class TrainerParams:
    """The trainer's parameters and their defaults, defined once for every embedding model."""

    embedding_dim: int = 64
    loss: str = "bpr"
    n_negatives: int = 1
    shared_negatives: bool = False
    temperature: float = 1.0
    lr: float = 1e-3
    reg_weight: float = 1e-4
    batch_size: int = 2048
    # When set, every epoch is this many steps and the batch is the training pairs / steps (batch_size
    # is then unused): a graph model propagates the whole graph per step, so a fixed batch makes an
    # epoch cost edges^2 / batch, and a fixed number of steps keeps it linear in the data.
    steps_per_epoch: int | None = None
    epochs: int = 100
    patience: int = 10
    eval_every: int = 1
    seed: int = 0
    quiet: bool = True

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "n_negatives", "batch_size", "epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if self.lr <= 0 or self.reg_weight < 0 or self.temperature <= 0:
            raise ValueError(
                f"lr and temperature must be > 0 and reg_weight >= 0, got lr={self.lr}, "
                f"temperature={self.temperature}, reg_weight={self.reg_weight}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")


class NeuralRecommender(EmbeddingRecommender):
    """A torch network trained by `train_model`; scores are dot products of its final embeddings.

    Negatives are drawn per (user, positive) pair, `n_negatives` each, excluding the user's
    positives; with `shared_negatives` each batch draws `n_negatives` items once and every row ranks
    its positive against all of them (its own positive masked out), so hundreds of negatives cost
    one matrix product instead of a gather of batch x n_negatives rows. A negative-free model sets
    `samples_negatives = False` and the loop draws none.

    Final embeddings are cached for scoring and recomputed whenever a parameter's version counter
    moves, i.e. after every optimiser step or restore. A saved model keeps its final embeddings and
    its network's weights: it scores and serves as loaded, and `restore(train, features)` rebuilds
    the network (graphs, feature buffers) around the weights for content mapping or further use.
    """

    samples_negatives: ClassVar[bool] = True
    can_fold_in = True

    def __init__(self, **training: Any) -> None:
        super().__init__()
        try:
            params = TrainerParams(**{**self.default_overrides, **training})
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}: {exc}") from None
        for f in fields(TrainerParams):
            setattr(self, f.name, getattr(params, f.name))
        self.best_epoch: int | None = None
        self.fold_in_l2 = 1.0
        self.net: torch.nn.Module | None = None
        self.bias: RatingBias | None = None
        self._cache: tuple[tuple[int, ...] | None, torch.Tensor, torch.Tensor] | None = None
        self._saved_net: dict[str, torch.Tensor] | None = None

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        own = super().param_defaults()
        trainer = {f.name: f.default for f in fields(TrainerParams)}
        return {**own, **trainer, **{k: v for k, v in cls.default_overrides.items() if k in trainer}}

    @property
    def predicts_ratings(self) -> bool:
        return self.loss == "mse"

    def fit(
        self,
        train: Interactions,
        item_features: FeatureInput | None = None,
        valid: Validator | None = None,
    ) -> Self:
        self._construct(train, as_feature_set(item_features))
        train_model(self, train, valid)
        return self

    def _construct(self, train: Interactions, features: FeatureSet) -> None:
        """A fresh network (and rating biases) for `train`, seeded."""
        self.n_users, self.n_items = train.n_users, train.n_items
        gen = torch.Generator().manual_seed(self.seed)
        # Layers such as nn.Linear draw from the global generator: seed it, then give it back.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = self._build(train, features, gen)
        mean = float(np.mean(train.value)) if len(train) else 0.0
        self.bias = RatingBias(train.n_users, train.n_items, mean) if self.loss == "mse" else None
        self._cache = None

    def restore(self, train: Interactions, item_features: FeatureInput | None = None) -> Self:
        """Rebuild a loaded model's network from the training data it was fitted on and put its saved
        weights back, so content mapping and further training work as after `fit`."""
        if self._saved_net is None:
            raise RuntimeError(f"{type(self).__name__} has no saved network to restore")
        cached = self._cache
        self._construct(train, as_feature_set(item_features))
        modules = {"net": self._network(), "bias": self.bias}
        for prefix, module in modules.items():
            if module is not None:
                state = {
                    k[len(prefix) + 1 :]: v for k, v in self._saved_net.items() if k.startswith(prefix + ".")
                }
                module.load_state_dict(state)
        self._network().eval()
        self._cache = (self._versions(), cached[1], cached[2]) if cached is not None else None
        return self

    def fold_in(self, histories: sp.csr_matrix, item_vectors: np.ndarray | None = None) -> np.ndarray:
        item_vectors = self.item_vectors() if item_vectors is None else item_vectors
        if self.loss == "mse":
            return ridge_fold_in(item_vectors, histories, self.fold_in_l2, fixed_last=1)
        return softmax_fold_in(
            item_vectors, (sp.csr_matrix(histories) > 0).astype(np.float32), self.fold_in_l2
        )

    # -- what a model defines ------------------------------------------------------------------
    def _build(self, train: Interactions, item_features: FeatureSet, gen: torch.Generator) -> torch.nn.Module:
        """The trainable network; the default is plain id tables (matrix factorisation)."""
        return IdTables(train.n_users, train.n_items, self.embedding_dim, gen)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings as a differentiable function of the network."""
        ids = self._ids()
        return ids.user, ids.item

    def _on_epoch_start(self, rng: np.random.Generator) -> None:
        """Per-epoch randomness outside the batches (e.g. graph edge dropout)."""

    def _auxiliary_loss(
        self,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        user_all: torch.Tensor,
        item_all: torch.Tensor,
    ) -> torch.Tensor | float:
        """Extra objective terms (e.g. a modality's own ranking loss); none by default."""
        return 0.0

    # -- shared machinery ----------------------------------------------------------------------
    def _ids(self) -> IdTables:
        net = self._network()
        ids = net if isinstance(net, IdTables) else getattr(net, "ids", None)
        if not isinstance(ids, IdTables):
            raise TypeError(f"{type(self).__name__} has no id tables; override _propagate")
        return ids

    def _network(self) -> torch.nn.Module:
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted (a loaded model only scores)")
        return self.net

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self._network().parameters())
        return params + list(self.bias.parameters()) if self.bias is not None else params

    def batch_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, values: torch.Tensor | None
    ) -> torch.Tensor:
        """The selected loss on final embeddings plus reg_weight x the L2 of the batch's ego
        embeddings (He et al. 2020, eq. 15), so the penalty does not grow with propagation depth."""
        # index_select, not tensor[idx]: its CPU backward is deterministic, advanced indexing's is not.
        user_all, item_all = self._propagate()
        u, p = user_all.index_select(0, users), item_all.index_select(0, pos)
        if self.loss == "mse":
            if values is None:
                raise ValueError("the mse loss needs rating values")
            assert self.bias is not None
            main = mse_loss(*self.bias.extend(u, p, users, pos), values)
            main = main + self.reg_weight * self.bias.l2(users, pos) / (2 * len(users))
        else:
            n = item_all.index_select(0, neg.reshape(-1)).view(*neg.shape, -1)
            main = ranking_loss(self.loss, u, p, n, self.temperature, self.negative_mask(pos, neg))
        reg = self._regulariser(users, pos, neg, item_all)
        return main + self.reg_weight * reg + self._auxiliary_loss(users, pos, neg, user_all, item_all)

    @staticmethod
    def negative_mask(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor | None:
        """Which shared negatives count for each row (not its own positive); None for per-pair
        negatives, which the sampler already drew outside each user's positives."""
        return None if neg.dim() == 2 else neg[None, :] != pos[:, None]

    @staticmethod
    def negative_weight(users: torch.Tensor, neg: torch.Tensor) -> float:
        """Scale of the negatives' L2 so that it weighs as one negative per row, shared or not."""
        return len(users) / max(neg.numel(), 1)

    def _regulariser(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, item_all: torch.Tensor
    ) -> torch.Tensor:
        """L2 of the batch's ego embeddings; `item_all` (the final item embeddings of this step) lets
        a model penalise computed item parts without computing them twice."""
        ids = self._ids()
        reg = ids.user.index_select(0, users).pow(2).sum() + ids.item.index_select(0, pos).pow(2).sum()
        if self.loss != "mse":
            reg = reg + squared_norm_of_rows(ids.item, neg) * self.negative_weight(users, neg)
        return reg / (2 * len(users))

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.parameters())

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None:
            if self._cache is None:
                raise RuntimeError(f"{type(self).__name__} is not fitted")
            return self._cache[1], self._cache[2]
        if self._cache is None or self._cache[0] != self._versions():
            with torch.no_grad():
                self._network().eval()
                user, item = self._propagate()
                if self.bias is not None:
                    every = torch.arange(len(user)), torch.arange(len(item))
                    user, item = self.bias.extend(user, item, *every)
                self._network().train()
            self._cache = (self._versions(), user.detach(), item.detach())
        return self._cache[1], self._cache[2]

    def _state(self) -> dict[str, torch.Tensor]:
        user, item = self._embeddings()
        state = {"user_final": user, "item_final": item, "fold_in_l2": torch.tensor(self.fold_in_l2)}
        if self.net is not None:
            state.update({f"net.{k}": v for k, v in self.net.state_dict().items()})
        if self.bias is not None:
            state.update({f"bias.{k}": v for k, v in self.bias.state_dict().items()})
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net, self.bias = None, None
        self._cache = (None, state["user_final"].clone(), state["item_final"].clone())
        self.fold_in_l2 = float(state.get("fold_in_l2", torch.tensor(1.0)))
        self._saved_net = {k: v for k, v in state.items() if k.startswith(("net.", "bias."))} or None


def squared_norm_of_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum of ||table[r]||^2 over `rows` (repeats counted). With more rows than the table has (many
    negatives per pair) it weights each row's norm by its count instead of gathering every copy."""
    rows = rows.reshape(-1)
    if len(rows) <= len(table):
        return table.index_select(0, rows).pow(2).sum()
    counts = torch.bincount(rows, minlength=len(table)).to(table.dtype)
    return (counts * table.pow(2).sum(1)).sum()
