"""The typed run summary is metrics.json's layout both ways, and metrics.json files of older runs
still load and render, the keys they lack taking the values those runs implied."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from crossrec.errors import CrossrecError
from crossrec.report.markdown import render_report
from crossrec.report.summary import RunSummary

LAYOUT = [
    "name",
    "dataset",
    "split",
    "protocol",
    "models",
    "ranking_by_validation",
    "significance",
    "significance_sentence",
    "ingest",
]
PROTOCOL = [
    "ranking",
    "masked_at_validation",
    "eval_protocol",
    "masked_at_test",
    "users_evaluated_at_test",
    "ks",
    "monitor",
    "valid_on",
    "selection_metric",
    "selection",
    "seeds",
    "warm_cold",
    "tuning",
    "compared_with",
]
MODEL = ["model", "params", "baseline", "tuning", "valid", "test", "fit_seconds", "runs"]


def test_to_dict_is_the_metrics_json_layout_and_reads_back(summary: RunSummary, tmp_path):
    d = summary.to_dict()
    assert list(d) == LAYOUT  # no `plots` key when none were drawn, as before
    assert list(d["protocol"]) == PROTOCOL and list(d["models"]["a"]) == MODEL
    assert list(d["models"]["a"]["tuning"]) == ["best_params", "best_value", "sampler", "trials"]
    assert d["models"]["a"]["test"]["recall@20"] == {"mean": 0.3, "std": 0.01, "n": 3}
    assert d["models"]["a"]["runs"][0]["epochs"] == 1 and d["significance"]["significant"] is True
    assert d["protocol"]["tuning"]["trials_per_model"] == 4
    with_plots = replace(summary, plots=["metric_comparison.png"], ingest="text: 24 items")
    for s in (summary, with_plots):
        assert RunSummary.from_dict(s.to_dict()) == s
        (tmp_path / "metrics.json").write_text(json.dumps(s.to_dict(), indent=2))
        assert RunSummary.load(tmp_path / "metrics.json") == s
    assert list(with_plots.to_dict())[-1] == "plots"


def _older(summary: RunSummary) -> dict:
    """The metrics.json a run written before eval_protocol, valid_on, baselines, tuning, content
    ingestion and F1 would have held."""
    d = summary.to_dict()
    for key in ("eval_protocol", "valid_on", "selection_metric", "warm_cold", "tuning", "compared_with"):
        del d["protocol"][key]
    for model in d["models"].values():
        del model["tuning"], model["baseline"]
        for run in model["runs"]:
            del run["test"]["f1@20"]
    del d["ingest"]
    return d


def test_an_older_metrics_json_still_loads_and_renders(summary: RunSummary, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_older(summary)))
    old = RunSummary.load(path)
    p = old.protocol
    assert (p.eval_protocol, p.masked_at_test, p.valid_on) == ("crossrec", ["train", "valid"], "all")
    assert (p.selection_metric, p.warm_cold, p.tuning, p.compared_with) == ("recall@20", False, None, None)
    assert old.models["a"].tuning is None and old.models["a"].baseline is False and old.ingest is None
    report = render_report(old)
    assert "training and validation items are masked at test" in report
    assert "Each model is trained with seeds [0, 1, 2]" in report
    assert "Epochs and models are chosen by validation recall@20 only" in report
    assert "compared with the runner-up by validation, b" in report
    assert "Warm and cold" not in report and "Hyper-parameter search" not in report


def test_a_tuning_without_its_sampler_renders_as_unrecorded(summary: RunSummary, tmp_path):
    d = summary.to_dict()
    del d["models"]["a"]["tuning"]["sampler"]  # runs before the sampler was recorded per model
    old = RunSummary.from_dict(d)
    assert old.models["a"].tuning.sampler is None
    assert old.to_dict() == d  # and it is not invented on the way back
    assert "| a | lr=0.01235 | 0.2500 | 4 | – | 6.0 |" in render_report(old)


def test_a_file_that_is_no_run_summary_is_refused_naming_it(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"name": "x", "models": {}}))
    with pytest.raises(
        CrossrecError, match=r"metrics.json is not a crossrec run summary: it lacks the key 'protocol'"
    ):
        RunSummary.load(path)
    path.write_text("{")
    with pytest.raises(CrossrecError, match=r"metrics.json is not a crossrec run summary: Expecting"):
        RunSummary.load(path)
