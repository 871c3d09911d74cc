"""The units of work of a run: a tuning trial and a (model, seed) fit + evaluation.

Each unit is a small frozen record, and `run_trial` / `run_fit` are plain functions of the run's
context and one unit, returning plain picklable results (the trained model as bytes): any executor
can run them in this process, in another process or on another machine, and the runner records what
comes back. The context (config, split, item features) is built once per process and holds the
evaluators, so a unit carries only names, parameters and a seed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from crossrec.config import Config
from crossrec.data.features import ItemFeatures
from crossrec.data.schema import Split
from crossrec.errors import CrossrecError
from crossrec.experiment.protocol import Protocol, build_protocol, read_metrics, validator_for
from crossrec.models import build_model
from crossrec.models.base import Recommender


@dataclass
class RunContext:
    """What every unit of a run reads: built once, shared by all its units."""

    config: Config
    split: Split
    features: dict[str, ItemFeatures]

    @cached_property
    def protocol(self) -> Protocol:
        return build_protocol(self.config, self.split, self.features)


def file_slug(label: str) -> str:
    """A model label or feature name as it appears in file names of the run folder and bundle."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


@dataclass(frozen=True)
class TrialUnit:
    """Train one sampled configuration with the first seed; its value is the validation monitor."""

    label: str
    model: str
    params: dict[str, Any]
    seed: int
    number: int

    @property
    def id(self) -> str:
        return f"trial-{file_slug(self.label)}-{self.number}"


@dataclass(frozen=True)
class FitUnit:
    """Train the chosen configuration with one seed, then read validation and (once) test."""

    label: str
    model: str
    params: dict[str, Any]
    seed: int

    @property
    def id(self) -> str:
        return f"fit-{file_slug(self.label)}-seed{self.seed}"


@dataclass
class FitResult:
    """One model trained with one seed: metrics, what training recorded, and the model itself."""

    label: str
    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    history: list[dict[str, float]]
    test_per_user: dict[str, np.ndarray] = field(repr=False)
    model_bytes: bytes = field(repr=False, default=b"")

    def model(self) -> Recommender:
        """The trained model, loaded from the bytes the unit returned."""
        return Recommender.load(self.model_bytes)


def _fit(ctx: RunContext, name: str, params: dict[str, Any], seed: int) -> tuple[Recommender, float]:
    model = build_model(name, seed=seed, **params)
    validator = validator_for(model, ctx.protocol, ctx.split, ctx.config.eval.batch_size)
    start = time.perf_counter()
    try:
        model.fit(ctx.split.train, ctx.features or None, validator)
    except (FloatingPointError, KeyError, RuntimeError) as exc:
        epoch = len(getattr(model, "history", [])) + 1
        raise UnitError(f"{name} (seed {seed}) failed at epoch {epoch}: {type(exc).__name__}: {exc}") from exc
    return model, time.perf_counter() - start


def run_trial(ctx: RunContext, unit: TrialUnit) -> float:
    """The trial's validation score (the selector's monitor, or -RMSE for a rating model)."""
    model, _ = _fit(ctx, unit.model, unit.params, unit.seed)
    validator = validator_for(model, ctx.protocol, ctx.split, ctx.config.eval.batch_size)
    return validator(model)[validator.monitor]


def run_fit(ctx: RunContext, unit: FitUnit) -> FitResult:
    model, seconds = _fit(ctx, unit.model, unit.params, unit.seed)
    batch = ctx.config.eval.batch_size
    valid, _ = read_metrics(ctx.protocol.valid, model, ctx.split.valid, batch)
    # The one read of the test split for this (model, seed); warm and cold items are subsets of it.
    test, per_user = read_metrics(ctx.protocol.test, model, ctx.split.test, batch)
    history = list(model.history)
    return FitResult(unit.label, unit.seed, valid, test, seconds, history, per_user, model.to_bytes())


class UnitError(CrossrecError):
    """A unit that failed inside training, named by model, seed and epoch."""
