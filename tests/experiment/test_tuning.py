"""The search alone, on toy objectives: it keeps the best trial, honours the budget, and repeats."""

from __future__ import annotations

import time

import optuna
import pytest

from crossrec.config import CategoricalSpec, FloatSpec, IntSpec, ModelConfig, TuneConfig
from crossrec.experiment.tuning import tune_model

SPACE = {
    "k": IntSpec(type="int", low=1, high=64, log=True),
    "lr": FloatSpec(type="float", low=1e-4, high=1e-1, log=True),
    "kind": CategoricalSpec(type="categorical", choices=["a", "b"]),
}


def _toy(search: dict) -> ModelConfig:
    """A model config outside the registry (unchecked): the search never builds a model itself."""
    return ModelConfig.model_construct(
        name="toy", label=None, params={"fixed": 5}, search=search, baseline=False
    )


def _objective(seen: list[dict]):
    def fit_and_validate(params: dict) -> float:
        seen.append(params)
        return -abs(params["k"] - 20) + (3 if params["kind"] == "b" else 0)

    return fit_and_validate


def test_picks_the_best_trial_within_the_budget():
    seen: list[dict] = []
    result = tune_model(_toy(SPACE), TuneConfig(trials=12, seed=3), _objective(seen))
    assert len(result.trials) == len(seen) == 12
    best = max(result.trials, key=lambda t: t.value)
    assert (result.best_value, result.best_params) == (best.value, best.params)
    assert set(result.best_params) == {"k", "lr", "kind"}  # sampled only: fixed params come on top
    assert all(p["fixed"] == 5 for p in seen)  # every trial trains with the fixed params too
    for t in result.trials:
        assert 1 <= t.params["k"] <= 64 and 1e-4 <= t.params["lr"] <= 1e-1 and t.seconds >= 0
    assert [t.number for t in result.trials] == list(range(12))
    assert result.to_dict()["trials"][0]["params"] == result.trials[0].params


def test_a_seeded_search_repeats_and_another_seed_differs():
    runs = [tune_model(_toy(SPACE), TuneConfig(trials=5, seed=s), _objective([])) for s in (0, 0, 1)]
    drawn = [[t.params for t in r.trials] for r in runs]
    assert drawn[0] == drawn[1]
    assert drawn[0] != drawn[2]


def test_timeout_stops_the_search_early():
    def slow(params: dict) -> float:
        time.sleep(0.05)
        return float(params["k"])

    result = tune_model(_toy({"k": SPACE["k"]}), TuneConfig(trials=1000, timeout_s=0.3), slow)
    assert 1 <= len(result.trials) < 20
    assert result.best_value == max(t.value for t in result.trials)


def test_search_restores_optuna_logging_and_needs_a_space():
    optuna.logging.set_verbosity(optuna.logging.INFO)
    tune_model(_toy({"k": SPACE["k"]}), TuneConfig(trials=1), lambda p: 0.0)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    with pytest.raises(ValueError, match="no search space"):
        tune_model(ModelConfig(name="mostpop"), TuneConfig(trials=1), lambda p: 0.0)


def test_a_budget_covering_a_categorical_grid_tries_every_point_once():
    grid = {
        "k": CategoricalSpec(type="categorical", choices=[10, 20]),
        "kind": CategoricalSpec(type="categorical", choices=["a", "b"]),
    }
    seen: list[dict] = []
    result = tune_model(_toy(grid), TuneConfig(trials=6, seed=0), _objective(seen))
    assert sorted((p["k"], p["kind"]) for p in seen) == [(10, "a"), (10, "b"), (20, "a"), (20, "b")]
    assert result.best_params == {"k": 20, "kind": "b"}


def test_a_resumed_search_proposes_what_the_uninterrupted_one_did():
    """The interrupted search's finished trials are replayed, not retrained, and the rest repeat."""
    full = tune_model(_toy(SPACE), TuneConfig(trials=14, seed=2), _objective([]))
    seen: list[dict] = []
    resumed = tune_model(
        _toy(SPACE), TuneConfig(trials=14, seed=2), _objective(seen), history=full.trials[:11]
    )
    assert len(seen) == 3  # only the missing trials trained
    assert [t.params for t in resumed.trials] == [t.params for t in full.trials]
    assert resumed.best_params == full.best_params and resumed.sampler == "Optuna TPE"


def test_the_sampler_is_named_for_what_ran():
    grid = {"kind": CategoricalSpec(type="categorical", choices=["a", "b"])}
    result = tune_model(_toy(grid), TuneConfig(trials=2), lambda p: 1.0)
    assert result.sampler == result.to_dict()["sampler"] == "grid search"
    assert tune_model(_toy(grid), TuneConfig(trials=1), lambda p: 1.0).sampler == "Optuna TPE"
