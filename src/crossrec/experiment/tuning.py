"""Hyper-parameter search on validation only, one trial at a time and replayable.

The search knows nothing of data or models: `next_params(history)` proposes the next configuration
from the trials finished so far, and the runner trains it (a unit of work on any executor) and
records its validation score. Each proposal depends only on the history and the trial number (the
sampler is seeded with `tune.seed + trial number` and the history is replayed into a fresh study),
so a run resumed after an interruption proposes exactly what the uninterrupted run would have.

An all-categorical space whose grid fits the budget is searched exhaustively, in a seeded order;
anything else uses Optuna's TPE sampler.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna

from crossrec.config import CategoricalSpec, FloatSpec, IntSpec, ModelConfig, TuneConfig

SAMPLERS = {"grid": "grid search", "tpe": "Optuna TPE"}  # key -> the name reports print


@dataclass(frozen=True)
class TrialRecord:
    """One trained configuration: the sampled parameters, its validation score, its cost."""

    number: int
    params: dict[str, Any]
    value: float
    seconds: float


@dataclass(frozen=True)
class TuneResult:
    """`best_params` holds the sampled parameters only; the model's fixed `params` come on top."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[TrialRecord]
    sampler: str  # what ran, as reports name it (SAMPLERS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_value": self.best_value,
            "sampler": self.sampler,
            "trials": [asdict(t) for t in self.trials],
        }


def _distributions(search: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in search.items():
        if isinstance(spec, FloatSpec):
            out[name] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
        elif isinstance(spec, IntSpec):
            out[name] = optuna.distributions.IntDistribution(spec.low, spec.high, log=spec.log)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(spec.choices)
    return out


def _grid(search: dict[str, FloatSpec | IntSpec | CategoricalSpec]) -> list[dict[str, Any]] | None:
    """Every point of the search space when every parameter is categorical, else None."""
    if not all(isinstance(spec, CategoricalSpec) for spec in search.values()):
        return None
    names = list(search)
    choices = [search[n].choices for n in names]  # type: ignore[union-attr]
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*choices)]


def sampler_name(model_cfg: ModelConfig, tune_cfg: TuneConfig) -> str:
    """`grid` when the budget covers an all-categorical space (random start-up draws would repeat
    points and miss others), else `tpe`."""
    grid = _grid(model_cfg.search)
    return "grid" if grid is not None and tune_cfg.trials >= len(grid) else "tpe"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def next_params(
    model_cfg: ModelConfig, tune_cfg: TuneConfig, history: list[TrialRecord]
) -> dict[str, Any] | None:
    """The sampled parameters of the next trial, or None when the search is over (budget spent, grid
    exhausted, or `timeout_s` used up by the finished trials)."""
    if not model_cfg.search:
        raise ValueError(f"model '{model_cfg.display_name}' has no search space to tune")
    if len(history) >= tune_cfg.trials:
        return None
    if tune_cfg.timeout_s is not None and sum(t.seconds for t in history) >= tune_cfg.timeout_s:
        return None
    if sampler_name(model_cfg, tune_cfg) == "grid":
        grid = _grid(model_cfg.search)
        assert grid is not None
        order = np.random.default_rng(tune_cfg.seed).permutation(len(grid))
        tried = [t.params for t in history]
        return next((grid[i] for i in order if grid[i] not in tried), None)
    distributions = _distributions(model_cfg.search)
    with _quiet_optuna():
        sampler = optuna.samplers.TPESampler(seed=tune_cfg.seed + len(history))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for t in history:
            study.add_trial(
                optuna.trial.create_trial(params=t.params, distributions=distributions, value=t.value)
            )
        return dict(study.ask(distributions).params)


def tune_result(model_cfg: ModelConfig, tune_cfg: TuneConfig, history: list[TrialRecord]) -> TuneResult:
    """The best trial (the first among equals) of a finished search."""
    if not history:
        raise ValueError(f"model '{model_cfg.display_name}': no trial finished")
    finite = [t for t in history if math.isfinite(t.value)] or history
    best = max(finite, key=lambda t: t.value)
    sampler = SAMPLERS[sampler_name(model_cfg, tune_cfg)]
    return TuneResult(dict(best.params), float(best.value), list(history), sampler)


def tune_model(
    model_cfg: ModelConfig,
    tune_cfg: TuneConfig,
    fit_and_validate: Callable[[dict[str, Any]], float],
    *,
    history: Sequence[TrialRecord] = (),
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> TuneResult:
    """Maximise `fit_and_validate(fixed params + sampled params)` over `model_cfg.search` within
    `tune_cfg.trials` trials (fewer if `timeout_s` runs out). `history` holds trials finished before
    an interruption (they are not trained again); `on_trial` records each new one as it finishes."""
    trials = list(history)
    while (sampled := next_params(model_cfg, tune_cfg, trials)) is not None:
        start = time.perf_counter()
        value = float(fit_and_validate({**model_cfg.params, **sampled}))
        record = TrialRecord(len(trials), sampled, value, time.perf_counter() - start)
        trials.append(record)
        if on_trial is not None:
            on_trial(record)
    return tune_result(model_cfg, tune_cfg, trials)
