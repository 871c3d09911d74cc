"""A small typed run summary: a cold-item run with a tuned model, a rating model and a paired test."""

from __future__ import annotations

import pytest

from crossrec.eval.stats import PairedTest
from crossrec.report.summary import (
    ModelSummary,
    ModelTuning,
    ProtocolSummary,
    RunSummary,
    SeedRun,
    Stat,
    Trial,
    TuningProtocol,
)


def _stat(mean: float) -> Stat:
    return Stat(mean, 0.01, 3)


def _model(
    label: str, metrics: dict[str, Stat], fit: float, tuning: ModelTuning | None = None
) -> ModelSummary:
    run = SeedRun(
        0, {"recall@20": 0.3}, {"recall@20": 0.3, "f1@20": 0.1}, fit, 1, [{"epoch": 1, "loss": 0.5}]
    )
    return ModelSummary(
        label=label,
        model="itemknn",
        params={"k": 10},
        tuning=tuning,
        valid=metrics,
        test=metrics,
        fit_seconds=_stat(fit),
        runs=[run],
    )


@pytest.fixture
def summary() -> RunSummary:
    test_a = {"recall@20": _stat(0.3), "warm_recall@20": _stat(0.35), "cold_recall@20": _stat(0.05)}
    test_b = {**test_a, "recall@20": _stat(0.2), "rmse": _stat(0.9), "mae": _stat(0.7)}
    tuning = ModelTuning(
        best_params={"lr": 0.0123456},
        best_value=0.25,
        sampler="Optuna TPE",
        trials=[Trial(i, {"lr": 0.01}, 0.2, 1.5) for i in range(4)],
    )
    return RunSummary(
        name="t",
        dataset={"name": "d", "users": 10, "items": 50, "interactions": 100, "density": 0.2},
        split={"name": "cold_item", "train": 80, "valid": 10, "test": 10, "cold_items": 5},
        protocol=ProtocolSummary(
            users_evaluated_at_test=9,
            ks=[20],
            monitor="recall@20",
            valid_on="cold",
            selection_metric="cold_recall@20",
            seeds=[0, 1, 2],
            warm_cold=True,
            tuning=TuningProtocol("Optuna TPE", 4, 7, None, 0, ["a"]),
            compared_with="strongest baseline",
        ),
        models={"a": _model("a", test_a, 2.0, tuning), "b": _model("b", test_b, 1.0)},
        ranking_by_validation=["a", "b"],
        significance=PairedTest("cold_recall@20", "a", "b", 9, 0.25, 3.0, 0.01, 0.02),
        significance_sentence="a is significantly better than b.",
    )
