"""Train/valid/test splits, vectorised over all users at once (no per-user Python loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from crossrec.data.schema import Dataset, Interactions, Split
from crossrec.errors import ConfigError
from crossrec.registry import Registry


def _rank_within_user(user: np.ndarray, order_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row among its user's rows when sorted by `order_key`, and that user's count."""
    order = np.lexsort((order_key, user))
    counts = np.bincount(user, minlength=int(user.max()) + 1 if len(user) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = np.arange(len(user)) - starts[user[order]]
    return rank, counts[user]


def _assign(n_test: np.ndarray, n_valid: np.ndarray, rank_from_end: np.ndarray) -> np.ndarray:
    """0 = train, 1 = valid, 2 = test; the last `n_test` ranks go to test, the `n_valid` before to valid."""
    part = np.zeros(len(rank_from_end), dtype=np.int8)
    part[rank_from_end < n_test + n_valid] = 1
    part[rank_from_end < n_test] = 2
    return part


def _holdout_sizes(n: np.ndarray, valid: float, test: float) -> tuple[np.ndarray, np.ndarray]:
    n_test = np.floor(n * test + 0.5).astype(np.int64)
    n_valid = np.floor(n * valid + 0.5).astype(np.int64)
    # Every user keeps at least one training interaction; test is served before valid.
    n_test = np.minimum(n_test, np.maximum(n - 1, 0))
    n_valid = np.minimum(n_valid, np.maximum(n - 1 - n_test, 0))
    return n_test, n_valid


def _from_parts(inter: Interactions, part: np.ndarray, name: str, cold: np.ndarray | None = None) -> Split:
    return Split(
        train=inter.select(part == 0),
        valid=inter.select(part == 1),
        test=inter.select(part == 2),
        name=name,
        cold_items=np.zeros(0, dtype=np.int64) if cold is None else np.sort(cold),
    )


def random_split(
    inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Per-user random split: each user's interactions are shuffled and cut by `ratios`."""
    train_r, valid_r, test_r = _check_ratios(ratios)
    total = train_r + valid_r + test_r
    rng = np.random.default_rng(seed)
    rank, n = _rank_within_user(inter.user, rng.random(len(inter)))
    n_test, n_valid = _holdout_sizes(n, valid_r / total, test_r / total)
    return _from_parts(inter, _assign(n_test, n_valid, n - 1 - rank), f"random-{seed}")


def temporal_split(inter: Interactions, holdout: int | float = 1) -> Split:
    """Leave-last-out by time: `holdout` k (int) puts each user's last k in test and the k before in
    valid; a fraction (float) holds out that share of each user's latest interactions, test last."""
    if inter.timestamp is None:
        raise ConfigError("a temporal split needs timestamps, and this dataset has none")
    # The sort is stable: ties in time keep row order (deterministic), and int64 keys keep ms / ns
    # timestamps exact, where float64 keys would round neighbouring times together.
    rank, n = _rank_within_user(inter.user, inter.timestamp)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or holdout <= 0:
        raise ConfigError(f"holdout must be a positive int or a fraction in (0, 1), got {holdout!r}")
    if isinstance(holdout, int):
        n_test = np.minimum(holdout, np.maximum(n - 1, 0))
        n_valid = np.minimum(holdout, np.maximum(n - 1 - n_test, 0))
    else:
        if not 0 < holdout < 1:
            raise ConfigError(f"a fractional holdout must be in (0, 1), got {holdout}")
        n_hold = np.floor(n * holdout + 0.5).astype(np.int64)
        n_hold = np.minimum(n_hold, np.maximum(n - 1, 0))
        n_test = (n_hold + 1) // 2
        n_valid = n_hold - n_test
    return _from_parts(inter, _assign(n_test, n_valid, n - 1 - rank), f"temporal-{holdout}")


def cold_item_split(
    inter: Interactions,
    cold_fraction: float = 0.1,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Hold a share of items out of training entirely: half of them feed valid, half test, so
    selecting on cold validation items never sees a cold test item. The warm rest splits randomly."""
    if not 0 < cold_fraction < 1:
        raise ConfigError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    rng = np.random.default_rng(seed)
    seen = np.flatnonzero(inter.item_counts() > 0)
    n_cold = max(2, round(cold_fraction * len(seen)))
    cold = rng.permutation(seen)[:n_cold]
    cold_valid, cold_test = cold[: n_cold // 2], cold[n_cold // 2 :]
    is_cold = np.isin(inter.item, cold)
    warm = random_split(inter.select(~is_cold), ratios, seed)
    return Split(
        train=warm.train,
        valid=warm.valid.concat(inter.select(np.isin(inter.item, cold_valid))),
        test=warm.test.concat(inter.select(np.isin(inter.item, cold_test))),
        name=f"cold_item-{cold_fraction}-{seed}",
        cold_items=np.sort(cold),
    )


def _check_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ConfigError(f"ratios must be three non-negative numbers with train > 0, got {ratios}")
    return tuple(float(r) for r in ratios)  # type: ignore[return-value]


def _shipped(dataset: Dataset, **_: Any) -> Split:
    if dataset.split is None:
        others = ", ".join(m for m in SPLITS if m not in ("shipped", "auto"))
        raise ConfigError(f"dataset '{dataset.name}' ships no split; choose one of {others}")
    return dataset.split


def _auto(dataset: Dataset, **options: Any) -> Split:
    """The one default of the CLI and the Python API: the split a format ships (MMRec, DiffMM), else
    leave-last-out by time."""
    if dataset.split is not None:
        return dataset.split
    if dataset.interactions.timestamp is None:
        raise ConfigError(
            f"dataset '{dataset.name}' ships no split and has no timestamps, so the default split "
            "(auto: shipped, else temporal) cannot be made; choose split.method random or cold_item"
        )
    return SPLITS["temporal"](dataset, **options)


SPLITS: Registry[Callable[..., Split]] = Registry("split method")
SPLITS.register("auto", _auto)
SPLITS.register("shipped", _shipped)
SPLITS.register("random", lambda d, *, ratios, seed, **_: random_split(d.interactions, ratios, seed))
SPLITS.register("temporal", lambda d, *, holdout, **_: temporal_split(d.interactions, holdout))
SPLITS.register(
    "cold_item",
    lambda d, *, cold_fraction, ratios, seed, **_: cold_item_split(
        d.interactions, cold_fraction, ratios, seed
    ),
)


def make_split(
    dataset: Dataset,
    method: str = "auto",
    *,
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    holdout: int | float = 1,
    cold_fraction: float = 0.1,
) -> Split:
    """The split a config asks for: `shipped` uses the one that came with the data, `auto` (the
    default here and in the config) that one when the data has one, else `temporal`."""
    return SPLITS[method](dataset, seed=seed, ratios=ratios, holdout=holdout, cold_fraction=cold_fraction)
