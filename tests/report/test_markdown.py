"""report.md states the protocol in words and shows warm/cold, rating and tuning tables when present."""

from __future__ import annotations

import copy

from crossrec.report.markdown import metric_table, render_report


def _stat(mean: float, n: int = 3) -> dict[str, float]:
    return {"mean": mean, "std": 0.01, "n": n}


def _payload() -> dict:
    test_a = {"recall@20": _stat(0.3), "warm_recall@20": _stat(0.35), "cold_recall@20": _stat(0.05)}
    test_b = {**test_a, "recall@20": _stat(0.2), "rmse": _stat(0.9), "mae": _stat(0.7)}
    tuning = {
        "best_params": {"lr": 0.0123456},
        "best_value": 0.25,
        "sampler": "Optuna TPE",
        "trials": [{"number": i, "params": {"lr": 0.01}, "value": 0.2, "seconds": 1.5} for i in range(4)],
    }
    return {
        "name": "t",
        "dataset": {"name": "d", "users": 10, "items": 50, "interactions": 100, "density": 0.2},
        "split": {"name": "cold_item", "train": 80, "valid": 10, "test": 10, "cold_items": 5},
        "protocol": {
            "users_evaluated_at_test": 9,
            "ks": [20],
            "monitor": "recall@20",
            "valid_on": "cold",
            "selection_metric": "cold_recall@20",
            "seeds": [0, 1, 2],
            "warm_cold": True,
            "tuning": {
                "sampler": "Optuna TPE",
                "trials_per_model": 4,
                "seed": 7,
                "timeout_s": None,
                "trial_seed": 0,
                "models": ["a"],
            },
            "compared_with": "strongest baseline",
        },
        "models": {
            "a": {"valid": test_a, "test": test_a, "fit_seconds": _stat(2.0), "params": {}, "tuning": tuning},
            "b": {"valid": test_b, "test": test_b, "fit_seconds": _stat(1.0), "params": {}, "tuning": None},
        },
        "ranking_by_validation": ["a", "b"],
        "significance": {"better": "a", "worse": "b", "metric": "cold_recall@20", "n_users": 9},
        "significance_sentence": "a is significantly better than b.",
    }


def test_report_states_the_protocol_and_the_extra_tables():
    report = render_report(_payload())
    assert "chosen by 4 Optuna TPE trials per model" in report
    assert "on the validation split only (sampler seed 7, each trial trained with seed 0" in report
    assert "then trained with seeds [0, 1, 2]" in report
    assert "ranking among cold validation items" in report
    assert "compared with the strongest baseline by validation, b" in report
    assert "paired t-test and a Wilcoxon signed-rank test over the 9 test users' cold_recall@20" in report
    assert "| a | lr=0.01235 | 0.2500 | 4 | Optuna TPE | 6.0 |" in report
    assert "## Warm and cold items" in report and "a is significantly better than b." in report
    assert "Ranking by validation cold_recall@20: a > b." in report


def test_tables_pick_columns_from_every_model_and_by_prefix():
    payload = _payload()
    main = metric_table(payload, "test")
    assert main.splitlines()[0] == "| model | recall@20 | rmse | mae | fit s |"
    assert "| a | 0.3000 ± 0.0100 | – | – | 2.0 ± 0.0 |" in main  # a has no rating metrics
    cold = metric_table(payload, "test", "cold_")
    assert cold.splitlines()[0] == "| model | recall@20 |"
    assert "| b | 0.0500 ± 0.0100 |" in cold


def test_reports_of_older_runs_still_render():
    payload = copy.deepcopy(_payload())
    for key in ("valid_on", "selection_metric", "warm_cold", "tuning", "compared_with"):
        del payload["protocol"][key]
    for model in payload["models"].values():
        del model["tuning"]
    report = render_report(payload)
    assert "Each model is trained with seeds [0, 1, 2]" in report
    assert "compared with the runner-up by validation, b" in report
    assert "Warm and cold" not in report and "Hyper-parameter search" not in report


def test_the_mmrec_protocol_is_stated():
    payload = copy.deepcopy(_payload())
    assert "training and validation items are masked at test" in render_report(payload)
    payload["protocol"].update(eval_protocol="mmrec", masked_at_test=["train"])
    report = render_report(payload)
    assert "only training items are masked at test (MMRec's protocol, eval.protocol: mmrec)" in report
    assert "training and validation items are masked" not in report


def test_the_sampler_that_ran_is_named():
    payload = copy.deepcopy(_payload())
    payload["protocol"]["tuning"]["sampler"] = "grid search"
    payload["models"]["a"]["tuning"]["sampler"] = "grid search"
    report = render_report(payload)
    assert "chosen by a grid search, every point of the grid once (budget 4 trials per model)" in report
    assert "| a | lr=0.01235 | 0.2500 | 4 | grid search | 6.0 |" in report
    assert "TPE" not in report
    payload["protocol"]["tuning"]["sampler"] = "grid search and Optuna TPE"
    assert "up to 4 trials per model (grid search and Optuna TPE, per model" in render_report(payload)
