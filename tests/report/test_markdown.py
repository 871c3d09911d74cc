"""report.md states the protocol in words and shows warm/cold, rating and tuning tables when present."""

from __future__ import annotations

from dataclasses import replace

from crossrec.report.markdown import metric_table, render_report
from crossrec.report.summary import RunSummary, Stat


def test_report_states_the_protocol_and_the_extra_tables(summary: RunSummary):
    report = render_report(summary)
    assert "chosen by 4 Optuna TPE trials per model" in report
    assert "on the validation split only (sampler seed 7, each trial trained with seed 0" in report
    assert "then trained with seeds [0, 1, 2]" in report
    assert "ranking among cold validation items" in report
    assert "compared with the strongest baseline by validation, b" in report
    assert "paired t-test and a Wilcoxon signed-rank test over the 9 test users' cold_recall@20" in report
    assert "| a | lr=0.01235 | 0.2500 | 4 | Optuna TPE | 6.0 |" in report
    assert "## Warm and cold items" in report and "a is significantly better than b." in report
    assert "Ranking by validation cold_recall@20: a > b." in report
    assert "## Plots" not in report
    assert "## Plots\n![bars.png](bars.png)" in render_report(replace(summary, plots=["bars.png"]))


def test_tables_pick_columns_from_every_model_and_by_prefix(summary: RunSummary):
    main = metric_table(summary, "test")
    assert main.splitlines()[0] == "| model | recall@20 | rmse | mae | fit s |"
    assert "| a | 0.3000 ± 0.0100 | – | – | 2.0 ± 0.0 |" in main  # a has no rating metrics
    cold = metric_table(summary, "test", "cold_")
    assert cold.splitlines()[0] == "| model | recall@20 |"
    assert "| b | 0.0500 ± 0.0100 |" in cold
    one_seed = replace(summary.models["a"], valid={"recall@20": Stat(0.25, 0.0, 1)})
    valid = metric_table(replace(summary, models={"a": one_seed}), "valid")
    assert "| a | 0.2500 | 2.0 ± 0.0 |" in valid  # validation columns, no ± for a single seed


def test_the_mmrec_protocol_is_stated(summary: RunSummary):
    assert "training and validation items are masked at test" in render_report(summary)
    mmrec = replace(summary.protocol, eval_protocol="mmrec", masked_at_test=["train"])
    report = render_report(replace(summary, protocol=mmrec))
    assert "only training items are masked at test (MMRec's protocol, eval.protocol: mmrec)" in report
    assert "training and validation items are masked" not in report


def test_the_sampler_that_ran_is_named(summary: RunSummary):
    def sampled_by(sampler: str, model_sampler: str) -> RunSummary:
        protocol = replace(summary.protocol, tuning=replace(summary.protocol.tuning, sampler=sampler))
        a = replace(summary.models["a"], tuning=replace(summary.models["a"].tuning, sampler=model_sampler))
        return replace(summary, protocol=protocol, models={**summary.models, "a": a})

    report = render_report(sampled_by("grid search", "grid search"))
    assert "chosen by a grid search, every point of the grid once (budget 4 trials per model)" in report
    assert "| a | lr=0.01235 | 0.2500 | 4 | grid search | 6.0 |" in report
    assert "TPE" not in report
    mixed = render_report(sampled_by("grid search and Optuna TPE", "grid search"))
    assert "up to 4 trials per model (grid search and Optuna TPE, per model" in mixed
