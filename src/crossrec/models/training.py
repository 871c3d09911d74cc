"""The one training loop for every embedding model.

One loop for the whole zoo keeps the protocol identical across models: the same negative sampler,
the same seeding, the same selectable loss, the same early stopping on the validator's metric and
the same restored best epoch. A model that needs no negatives (BM3 is negative-free) says so with
`samples_negatives = False`, and the loop draws none for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.models.base import Validator
from crossrec.models.sampling import NegativeSampler
from crossrec.training import EarlyStopping


class Trainable(Protocol):
    """What the loop needs of a model (`NeuralRecommender` is one): its trainer parameters, its
    parameters, a batch loss and a per-epoch hook; the loop writes `history` and `best_epoch`."""

    seed: int
    loss: str
    samples_negatives: bool
    shared_negatives: bool
    n_negatives: int
    lr: float
    batch_size: int
    steps_per_epoch: int | None
    epochs: int
    patience: int
    eval_every: int
    quiet: bool
    history: list[dict[str, float]]
    best_epoch: int | None

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def batch_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, values: torch.Tensor | None
    ) -> torch.Tensor: ...

    def _on_epoch_start(self, rng: np.random.Generator) -> None: ...


def train_model(
    model: Trainable, train: Interactions, valid: Validator | None = None, *, shard: tuple[int, int] = (0, 1)
) -> None:
    """Adam on shuffled mini-batches of (user, positive, sampled negatives) or (user, item, rating).

    With a validator, it evaluates every `eval_every` epochs, stops after `patience` evaluations
    without a better `valid.monitor`, and restores the best epoch's parameters; without one it runs
    all `epochs` and keeps the last. `model.history` gets one dict per epoch.

    `shard=(rank, world)` trains data-parallel in an initialised torch.distributed group: every rank
    draws the same epoch (same seed), takes every world-th batch, and averages its gradients with
    the others before each step, so all ranks hold the same parameters, validate alike and stop
    together.
    """
    rng = np.random.default_rng(model.seed)
    if model.loss == "mse":
        users, items = train.user.astype(np.int64), train.item.astype(np.int64)
        values: np.ndarray | None = train.value.astype(np.float32)
        sampler = None
    else:
        pairs = train.to_csr(binary=True).tocoo()
        users, items, values = pairs.row.astype(np.int64), pairs.col.astype(np.int64), None
        sampler = NegativeSampler(train) if model.samples_negatives else None
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
            loss = _train_epoch(model, optimizer, users, items, values, sampler, rng, shard)
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
    model: Trainable,
    optimizer: torch.optim.Optimizer,
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray | None,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
    shard: tuple[int, int] = (0, 1),
) -> float:
    """One pass over every training pair in a fresh random order; returns the mean loss (over all
    ranks' batches when data-parallel)."""
    order = rng.permutation(len(users))
    batch_users = torch.from_numpy(users[order])
    batch_pos = torch.from_numpy(items[order])
    batch_values = None if values is None else torch.from_numpy(values[order])
    size = epoch_batch_size(model, len(order))
    starts = range(0, len(order), size)
    shared = sampler is not None and model.shared_negatives  # one row of negatives per batch
    if sampler is None:
        batch_neg = torch.zeros((len(order), 0), dtype=torch.long)
    elif shared:
        batch_neg = torch.from_numpy(rng.integers(0, sampler.n_items, size=(len(starts), model.n_negatives)))
    else:
        drawn = sampler.sample(np.repeat(users[order], model.n_negatives), rng)
        batch_neg = torch.from_numpy(drawn.reshape(len(order), model.n_negatives))
    rank, world = shard
    total = 0.0
    for step in range(0, len(starts), world):
        b = step + rank
        optimizer.zero_grad(set_to_none=True)
        if b < len(starts):  # the last round may leave a rank without a batch: it adds no gradient
            lo = starts[b]
            hi = lo + size
            vals = None if batch_values is None else batch_values[lo:hi]
            neg = batch_neg[b] if shared else batch_neg[lo:hi]
            loss = model.batch_loss(batch_users[lo:hi], batch_pos[lo:hi], neg, vals)
            loss.backward()
            total += loss.item() * len(batch_users[lo:hi])
        if world > 1:
            _average_gradients(model.parameters(), world)
        optimizer.step()
    if world > 1:
        summed = torch.tensor([total], dtype=torch.float64)
        torch.distributed.all_reduce(summed)
        total = float(summed.item())
    return total / len(order)


def epoch_batch_size(model: Trainable, pairs: int) -> int:
    """The batch of an epoch over `pairs`: `batch_size`, or the pairs split into `steps_per_epoch`."""
    if model.steps_per_epoch is None:
        return model.batch_size
    return max(1, math.ceil(pairs / model.steps_per_epoch))


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """The mean of every rank's gradients on every rank (what DistributedDataParallel does, for a
    loss that is not a module's forward: graph models propagate the whole graph per batch)."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        torch.distributed.all_reduce(param.grad)
        param.grad /= world


@contextmanager
def _progress(model: Trainable, monitor: str | None) -> Iterator[Callable[[dict[str, Any], float], None]]:
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
