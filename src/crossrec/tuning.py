"""Hyper-parameter search with Optuna on validation only: TPE, or every point of an all-categorical
grid (GridSampler) when the budget covers it.

The search knows nothing of data or models: `fit_and_validate(params)` trains one configuration and
returns its validation score, so the pipeline decides what is read (never the test split) and tests
can drive the search with a toy objective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from crossrec.config import CategoricalSpec, FloatSpec, IntSpec, ModelConfig, TuneConfig


@dataclass(frozen=True)
class TrialRecord:
    """One trained configuration: the sampled parameters, its validation score, its cost."""

    number: int
    params: dict[str, Any]
    value: float
    seconds: float


SAMPLER_NAMES = {"TPESampler": "Optuna TPE", "GridSampler": "Optuna GridSampler"}


@dataclass(frozen=True)
class TuneResult:
    """`best_params` holds the sampled parameters only; the model's fixed `params` come on top.
    `sampler` names the sampler that ran, so a report never claims TPE for a grid."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[TrialRecord]
    sampler: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_value": self.best_value,
            "sampler": self.sampler,
            "trials": [asdict(t) for t in self.trials],
        }


def _suggest(trial: optuna.Trial, search: dict[str, FloatSpec | IntSpec | CategoricalSpec]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, spec in search.items():
        if isinstance(spec, FloatSpec):
            params[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        elif isinstance(spec, IntSpec):
            params[name] = trial.suggest_int(name, spec.low, spec.high, log=spec.log)
        else:
            params[name] = trial.suggest_categorical(name, spec.choices)
    return params


@contextmanager
def _optuna_verbosity(quiet: bool) -> Iterator[None]:
    """Optuna logs every trial at INFO; a quiet run should print nothing, and leave the level as it was."""
    previous = optuna.logging.get_verbosity()
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _grid(search: dict[str, FloatSpec | IntSpec | CategoricalSpec]) -> dict[str, list[Any]] | None:
    """The search space as a grid when every parameter is categorical, else None."""
    if all(isinstance(spec, CategoricalSpec) for spec in search.values()):
        return {name: list(spec.choices) for name, spec in search.items()}  # type: ignore[union-attr]
    return None


def _sampler(model_cfg: ModelConfig, tune_cfg: TuneConfig) -> optuna.samplers.BaseSampler:
    """TPE, except when the budget covers an all-categorical space: then every point of the grid is
    tried once (random sampling in TPE's start-up phase would repeat points and miss others)."""
    grid = _grid(model_cfg.search)
    if grid is not None and tune_cfg.trials >= math.prod(len(v) for v in grid.values()):
        return optuna.samplers.GridSampler(grid, seed=tune_cfg.seed)
    return optuna.samplers.TPESampler(seed=tune_cfg.seed)


def tune_model(
    model_cfg: ModelConfig,
    tune_cfg: TuneConfig,
    fit_and_validate: Callable[[dict[str, Any]], float],
    *,
    quiet: bool = True,
) -> TuneResult:
    """Maximise `fit_and_validate(fixed params + sampled params)` over `model_cfg.search` in at most
    `tune_cfg.trials` trials (fewer if `timeout_s` runs out); the sampler is seeded, so a search repeats."""
    if not model_cfg.search:
        raise ValueError(f"model '{model_cfg.display_name}' has no search space to tune")
    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        sampled = _suggest(trial, model_cfg.search)
        start = time.perf_counter()
        value = float(fit_and_validate({**model_cfg.params, **sampled}))
        records.append(TrialRecord(trial.number, sampled, value, time.perf_counter() - start))
        return value

    sampler = _sampler(model_cfg, tune_cfg)
    with _optuna_verbosity(quiet):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=tune_cfg.trials, timeout=tune_cfg.timeout_s)
    best = study.best_trial
    return TuneResult(dict(best.params), float(best.value), records, SAMPLER_NAMES[type(sampler).__name__])
