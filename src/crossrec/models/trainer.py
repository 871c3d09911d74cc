"""The one training loop for every embedding model, and the base class of the models it trains.

One loop for the whole zoo keeps the protocol identical across models: the same negative sampler,
the same seeding, the same selectable loss, the same early stopping on the validator's metric and
the same restored best epoch. A model only says how it builds its network from the training data
(`_build`) and how the network turns into final user and item embeddings (`_propagate`).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.base import EmbeddingRecommender, Validator
from crossrec.models.losses import LOSSES, mse_loss, ranking_loss
from crossrec.models.sampling import NegativeSampler
from crossrec.training import EarlyStopping


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


class NeuralRecommender(EmbeddingRecommender):
    """A torch network trained by `train_model`; scores are dot products of its final embeddings.

    Negatives are drawn per (user, positive) pair, `n_negatives` each, excluding the user's
    positives; with `shared_negatives` each batch draws `n_negatives` items once and every row ranks
    its positive against all of them (its own positive masked out), so hundreds of negatives cost
    one matrix product instead of a gather of batch x n_negatives rows.

    Final embeddings are cached for scoring and recomputed whenever a parameter's version counter
    moves, i.e. after every optimiser step or restore. A saved model keeps only its final
    embeddings: it scores and serves, and is refitted (not resumed) to train further.
    """

    def __init__(
        self,
        embedding_dim: int = 64,
        loss: str = "bpr",
        n_negatives: int = 1,
        shared_negatives: bool = False,
        temperature: float = 1.0,
        lr: float = 1e-3,
        reg_weight: float = 1e-4,
        batch_size: int = 2048,
        epochs: int = 100,
        patience: int = 10,
        eval_every: int = 1,
        seed: int = 0,
        quiet: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("n_negatives", n_negatives),
            ("batch_size", batch_size),
            ("epochs", epochs),
            ("patience", patience),
            ("eval_every", eval_every),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if lr <= 0 or reg_weight < 0 or temperature <= 0:
            raise ValueError(
                f"lr and temperature must be > 0 and reg_weight >= 0, got lr={lr}, "
                f"temperature={temperature}, reg_weight={reg_weight}"
            )
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
        self.embedding_dim = embedding_dim
        self.loss = loss
        self.n_negatives = n_negatives
        self.shared_negatives = shared_negatives
        self.temperature = temperature
        self.lr = lr
        self.reg_weight = reg_weight
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.eval_every = eval_every
        self.seed = seed
        self.quiet = quiet
        self.best_epoch: int | None = None
        self.net: torch.nn.Module | None = None
        self.bias: RatingBias | None = None
        self._cache: tuple[tuple[int, ...] | None, torch.Tensor, torch.Tensor] | None = None

    @property
    def predicts_ratings(self) -> bool:
        return self.loss == "mse"

    def fit(
        self,
        train: Interactions,
        item_features: dict[str, np.ndarray] | None = None,
        valid: Validator | None = None,
    ) -> Self:
        self.n_users, self.n_items = train.n_users, train.n_items
        gen = torch.Generator().manual_seed(self.seed)
        # Layers such as nn.Linear draw from the global generator: seed it, then give it back.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = self._build(train, item_features or {}, gen)
        mean = float(np.mean(train.value)) if len(train) else 0.0
        self.bias = RatingBias(train.n_users, train.n_items, mean) if self.loss == "mse" else None
        self._cache = None
        train_model(self, train, valid)
        return self

    # -- what a model defines ------------------------------------------------------------------
    def _build(
        self, train: Interactions, item_features: Mapping[str, np.ndarray], gen: torch.Generator
    ) -> torch.nn.Module:
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
        return {"user_final": user, "item_final": item}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net, self.bias = None, None
        self._cache = (None, state["user_final"].clone(), state["item_final"].clone())


def squared_norm_of_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum of ||table[r]||^2 over `rows` (repeats counted). With more rows than the table has (many
    negatives per pair) it weights each row's norm by its count instead of gathering every copy."""
    rows = rows.reshape(-1)
    if len(rows) <= len(table):
        return table.index_select(0, rows).pow(2).sum()
    counts = torch.bincount(rows, minlength=len(table)).to(table.dtype)
    return (counts * table.pow(2).sum(1)).sum()


def trainer_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `NeuralRecommender` arguments among a subclass's `locals()`: subclasses list every
    parameter explicitly (scikit-learn style) and pass the shared ones up with this."""
    names = inspect.signature(NeuralRecommender.__init__).parameters
    return {k: v for k, v in values.items() if k in names and k != "self"}


def train_model(model: NeuralRecommender, train: Interactions, valid: Validator | None = None) -> None:
    """Adam on shuffled mini-batches of (user, positive, sampled negatives) or (user, item, rating).

    With a validator, it evaluates every `eval_every` epochs, stops after `patience` evaluations
    without a better `valid.monitor`, and restores the best epoch's parameters; without one it runs
    all `epochs` and keeps the last. `model.history` gets one dict per epoch.
    """
    rng = np.random.default_rng(model.seed)
    if model.loss == "mse":
        users, items = train.user.astype(np.int64), train.item.astype(np.int64)
        values: np.ndarray | None = train.value.astype(np.float32)
        sampler = None
    else:
        pairs = train.to_csr(binary=True).tocoo()
        users, items, values = pairs.row.astype(np.int64), pairs.col.astype(np.int64), None
        sampler = NegativeSampler(train)
    if len(users) == 0:
        raise ValueError("cannot train on an empty interaction set")
    optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
    model.history = []
    model.best_epoch = None
    stopping: EarlyStopping[list[torch.Tensor]] = EarlyStopping(model.patience)
    monitor = valid.monitor if valid is not None else None
    with _progress(model, monitor) as show:
        for epoch in range(1, model.epochs + 1):
            start = time.perf_counter()
            model._on_epoch_start(rng)
            loss = _train_epoch(model, optimizer, users, items, values, sampler, rng)
            record: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - start}
            if not math.isfinite(loss):
                raise FloatingPointError(f"{type(model).__name__} loss diverged at epoch {epoch}; lower lr")
            if valid is not None and (epoch % model.eval_every == 0 or epoch == model.epochs):
                start = time.perf_counter()
                metrics = valid(model)
                record["eval_seconds"] = time.perf_counter() - start
                record.update(metrics)
                if valid.monitor not in metrics:
                    raise KeyError(f"validator returned no '{valid.monitor}'; it has {sorted(metrics)}")
                stopping.update(
                    metrics[valid.monitor], epoch, lambda: [p.detach().clone() for p in model.parameters()]
                )
                model.best_epoch = stopping.best_step
            model.history.append(record)
            show(record, stopping.best_score)
            if stopping.should_stop:
                break
    if stopping.best_state is not None:
        with torch.no_grad():
            for param, best in zip(model.parameters(), stopping.best_state, strict=True):
                param.copy_(best)


def _train_epoch(
    model: NeuralRecommender,
    optimizer: torch.optim.Optimizer,
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray | None,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
) -> float:
    """One pass over every training pair in a fresh random order; returns the mean loss."""
    order = rng.permutation(len(users))
    batch_users = torch.from_numpy(users[order])
    batch_pos = torch.from_numpy(items[order])
    batch_values = None if values is None else torch.from_numpy(values[order])
    starts = range(0, len(order), model.batch_size)
    shared = sampler is not None and model.shared_negatives  # one row of negatives per batch
    if sampler is None:
        batch_neg = torch.zeros((len(order), 0), dtype=torch.long)
    elif shared:
        batch_neg = torch.from_numpy(rng.integers(0, sampler.n_items, size=(len(starts), model.n_negatives)))
    else:
        drawn = sampler.sample(np.repeat(users[order], model.n_negatives), rng)
        batch_neg = torch.from_numpy(drawn.reshape(len(order), model.n_negatives))
    total = 0.0
    for b, lo in enumerate(starts):
        hi = lo + model.batch_size
        vals = None if batch_values is None else batch_values[lo:hi]
        neg = batch_neg[b] if shared else batch_neg[lo:hi]
        loss = model.batch_loss(batch_users[lo:hi], batch_pos[lo:hi], neg, vals)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch_users[lo:hi])
    return total / len(order)


@contextmanager
def _progress(
    model: NeuralRecommender, monitor: str | None
) -> Iterator[Callable[[dict[str, Any], float], None]]:
    """A rich progress bar over epochs, or a no-op when the model is quiet."""
    if model.quiet:
        yield lambda record, best: None
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task(type(model).__name__, total=model.epochs)

        def update(record: dict[str, Any], best: float) -> None:
            text = f"{type(model).__name__} epoch {record['epoch']}: loss {record['loss']:.4f}"
            if monitor is not None and math.isfinite(best):
                text += f", best {monitor} {best:.4f}"
            bar.update(task, advance=1, description=text)

        yield update
