"""The pairwise (BPR) trainer shared by embedding models, and the base class of the models it trains.

One loop for every model keeps the protocol identical across the zoo: the same negative sampler,
the same seeding, the same early stopping on the validator's metric, the same restored best epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F

from crossrec.data.schema import Interactions
from crossrec.models.base import EmbeddingRecommender, Validator
from crossrec.models.sampling import NegativeSampler


class PairwiseModel(EmbeddingRecommender):
    """User and item embedding tables trained with the BPR loss by `train_pairwise`.

    Subclasses change `_propagate` (how ego embeddings become final ones) and `_prepare` (what they
    precompute from the training data). Final embeddings are cached for scoring and recomputed
    whenever a parameter's version counter moves, i.e. after every optimiser step or restore.
    """

    def __init__(
        self,
        embedding_dim: int = 64,
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
            ("batch_size", batch_size),
            ("epochs", epochs),
            ("patience", patience),
            ("eval_every", eval_every),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if lr <= 0 or reg_weight < 0:
            raise ValueError(f"lr must be > 0 and reg_weight >= 0, got lr={lr}, reg_weight={reg_weight}")
        self.embedding_dim = embedding_dim
        self.lr = lr
        self.reg_weight = reg_weight
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.eval_every = eval_every
        self.seed = seed
        self.quiet = quiet
        self.best_epoch: int | None = None
        self.user_embedding = torch.nn.Parameter(torch.zeros(0, embedding_dim))
        self.item_embedding = torch.nn.Parameter(torch.zeros(0, embedding_dim))
        self._cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    def fit(
        self,
        train: Interactions,
        item_features: dict[str, np.ndarray] | None = None,
        valid: Validator | None = None,
    ) -> Self:
        self.n_users, self.n_items = train.n_users, train.n_items
        gen = torch.Generator().manual_seed(self.seed)
        self.user_embedding = torch.nn.Parameter(self._init_table(self.n_users, gen))
        self.item_embedding = torch.nn.Parameter(self._init_table(self.n_items, gen))
        self._cache = None
        self._prepare(train)
        train_pairwise(self, train, valid)
        return self

    def _init_table(self, rows: int, gen: torch.Generator) -> torch.Tensor:
        """Xavier-uniform, as MMRec initialises BPR and LightGCN."""
        table = torch.empty(rows, self.embedding_dim)
        torch.nn.init.xavier_uniform_(table, generator=gen)
        return table

    def _prepare(self, train: Interactions) -> None:
        """Precompute what `_propagate` needs from the training data."""

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings as a differentiable function of the ego tables."""
        return self.user_embedding, self.item_embedding

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.user_embedding, self.item_embedding]

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """BPR loss plus reg_weight * (||e_u||^2 + ||e_i||^2 + ||e_j||^2) / 2 per triple, on ego
        embeddings (He et al. 2020, eq. 15), so the penalty does not grow with propagation depth."""
        # index_select, not tensor[idx]: its CPU backward is deterministic, advanced indexing's is not.
        user_all, item_all = self._propagate()
        u, p, n = (t.index_select(0, i) for t, i in ((user_all, users), (item_all, pos), (item_all, neg)))
        bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        reg = (
            self.user_embedding.index_select(0, users).pow(2).sum()
            + self.item_embedding.index_select(0, pos).pow(2).sum()
            + self.item_embedding.index_select(0, neg).pow(2).sum()
        ) / (2 * len(users))
        return bpr + self.reg_weight * reg

    def _versions(self) -> tuple[int, int]:
        return (self.user_embedding._version, self.item_embedding._version)

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0] != self._versions():
            with torch.no_grad():
                user, item = self._propagate()
            self._cache = (self._versions(), user.detach(), item.detach())
        return self._cache[1], self._cache[2]

    def _state(self) -> dict[str, torch.Tensor]:
        return {
            "user_embedding": self.user_embedding.detach(),
            "item_embedding": self.item_embedding.detach(),
        }

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.user_embedding = torch.nn.Parameter(state["user_embedding"].clone())
        self.item_embedding = torch.nn.Parameter(state["item_embedding"].clone())
        self._cache = None


def train_pairwise(model: PairwiseModel, train: Interactions, valid: Validator | None = None) -> None:
    """Adam on shuffled mini-batches of (user, positive, sampled negative) triples.

    With a validator, it evaluates every `eval_every` epochs, stops after `patience` evaluations
    without a better `valid.monitor`, and restores the best epoch's parameters; without one it runs
    all `epochs` and keeps the last. `model.history` gets one dict per epoch.
    """
    rng = np.random.default_rng(model.seed)
    sampler = NegativeSampler(train)
    pairs = train.to_csr(binary=True).tocoo()
    if pairs.nnz == 0:
        raise ValueError("cannot train on an empty interaction set")
    users, items = pairs.row.astype(np.int64), pairs.col.astype(np.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
    model.history = []
    model.best_epoch = None
    best_score, best_params, bad_evals = -math.inf, None, 0
    monitor = valid.monitor if valid is not None else None
    with _progress(model, monitor) as show:
        for epoch in range(1, model.epochs + 1):
            start = time.perf_counter()
            loss = _train_epoch(model, optimizer, users, items, sampler, rng)
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
                if metrics[valid.monitor] > best_score:
                    best_score, bad_evals, model.best_epoch = metrics[valid.monitor], 0, epoch
                    best_params = [p.detach().clone() for p in model.parameters()]
                else:
                    bad_evals += 1
            model.history.append(record)
            show(record, best_score)
            if bad_evals >= model.patience:
                break
    if best_params is not None:
        with torch.no_grad():
            for param, best in zip(model.parameters(), best_params, strict=True):
                param.copy_(best)


def _train_epoch(
    model: PairwiseModel,
    optimizer: torch.optim.Optimizer,
    users: np.ndarray,
    items: np.ndarray,
    sampler: NegativeSampler,
    rng: np.random.Generator,
) -> float:
    """One pass over every training pair in a fresh random order; returns the mean loss."""
    order = rng.permutation(len(users))
    batch_users = torch.from_numpy(users[order])
    batch_pos = torch.from_numpy(items[order])
    batch_neg = torch.from_numpy(sampler.sample(users[order], rng))
    total = 0.0
    for lo in range(0, len(order), model.batch_size):
        hi = lo + model.batch_size
        loss = model.batch_loss(batch_users[lo:hi], batch_pos[lo:hi], batch_neg[lo:hi])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch_users[lo:hi])
    return total / len(order)


@contextmanager
def _progress(model: PairwiseModel, monitor: str | None) -> Iterator[Callable[[dict[str, Any], float], None]]:
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
