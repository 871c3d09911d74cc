"""End to end on real data: movielens-small through split, models, evaluation and report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossrec.data.schema import Split
from crossrec.errors import ConfigError
from crossrec.experiment import run_experiment
from crossrec.report.summary import RunSummary

pytestmark = pytest.mark.slow


def _config(shared_data, tmp_path):
    return {
        "name": "e2e",
        "output_dir": str(tmp_path),
        "seeds": [0, 1],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "temporal", "holdout": 0.2},
        "eval": {"ks": [10, 20], "diversity_features": "genres"},
        "models": [
            {"name": "mostpop"},
            {"name": "bpr", "params": {"epochs": 3, "embedding_dim": 32}},
            {"name": "lightgcn", "params": {"epochs": 3, "embedding_dim": 32}},
            {"name": "bpr", "label": "mf-mse", "params": {"loss": "mse", "epochs": 3, "embedding_dim": 8}},
        ],
        "report": {"tensorboard": True},
    }


def test_run_writes_a_complete_reproducible_report(shared_data, tmp_path, monkeypatch):
    from crossrec.experiment import artifacts

    plot, shown = artifacts.plot_metric_comparison, []

    def recording_plot(tables, metrics, path):
        shown.append(list(metrics))
        return plot(tables, metrics, path)

    monkeypatch.setattr(artifacts, "plot_metric_comparison", recording_plot)
    result = run_experiment(_config(shared_data, tmp_path), quiet=True)
    assert shown == [[f"{m}@20" for m in ("recall", "ndcg", "precision", "f1", "map", "hit", "mrr")]]
    run_dir = tmp_path / "e2e"
    for name in (
        "report.md",
        "metrics.json",
        "config.yaml",
        "split.npz",
        "training_curves.png",
        "metric_comparison.png",
    ):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))

    written = json.loads((run_dir / "metrics.json").read_text())
    summary = result.summary
    assert summary.to_dict() == written and RunSummary.load(run_dir / "metrics.json") == summary
    assert summary.plots == ["training_curves.png", "metric_comparison.png"] == written["plots"]
    assert set(summary.models) == {"mostpop", "bpr", "lightgcn", "mf-mse"}
    rating_model = summary.models["mf-mse"]
    assert rating_model.test["rmse"].mean > rating_model.test["mae"].mean > 0
    for run in rating_model.runs:  # it stopped on validation RMSE, not on the ranking monitor
        history = [h for h in run.history if "neg_rmse" in h]
        assert len(history) == run.epochs == 3 and all(h["neg_rmse"] == -h["rmse"] for h in history)
        assert run.valid["rmse"] == pytest.approx(min(h["rmse"] for h in history), rel=1e-6)
    lightgcn = summary.models["lightgcn"]
    assert lightgcn.test["recall@20"].n == 2
    assert 0 < lightgcn.test["recall@20"].mean < 1
    for metric in (
        "ndcg@20",
        "precision@20",
        "f1@20",
        "map@20",
        "hit@20",
        "mrr@20",
        "coverage@20",
        "novelty@20",
        "diversity@20",
    ):
        assert metric in lightgcn.test, metric
    assert summary.significance.better == summary.ranking_by_validation[0]

    report = (run_dir / "report.md").read_text()
    assert "full ranking" in report and "masked" in report and "± " in report
    assert "| precision@20 | f1@20 |" in report
    assert summary.significance_sentence in report
    assert "![metric_comparison.png](metric_comparison.png)" in report

    saved = Split.load(run_dir / "split.npz")
    assert len(saved.test) == summary.split["test"]

    # Reproducible: rerun from nothing but the folder's saved config and split (no recorded units).
    import shutil

    from crossrec.experiment import resume_experiment

    shutil.rmtree(run_dir / "units")
    again = resume_experiment(run_dir, quiet=True).summary
    for label, model in summary.models.items():
        for first, second in zip(model.runs, again.models[label].runs, strict=True):
            assert (first.seed, first.valid, first.test, first.epochs) == (
                second.seed,
                second.valid,
                second.test,
                second.epochs,
            ), label


def test_run_with_encoded_content_feeds_content_models(shared_data, tmp_path):
    config = {
        "name": "encoded",
        "output_dir": str(tmp_path),
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "encode": {
            "cache_dir": str(tmp_path / "cache"),
            "max_items": 24,
            "models": {"text": {"fields": ["title", "genres"]}, "image": {}, "audio": None},
        },
        "split": {"method": "random"},
        "eval": {"diversity_features": "text"},
        "models": [
            {"name": "contentknn", "label": "text", "params": {"feature": "text"}},
            {"name": "contentknn", "label": "poster", "params": {"feature": "image"}},
        ],
    }
    result = run_experiment(config, quiet=True)
    ingest = json.loads((tmp_path / "encoded" / "ingest_report.json").read_text())
    assert ingest["counts"]["text"]["items"] == 24
    for label in ("text", "poster"):
        assert result.summary.models[label].test["recall@20"].mean > 0
    assert "diversity@20" in result.summary.models["text"].test
    assert result.summary.ingest and result.summary.ingest.splitlines()[0] in (
        (tmp_path / "encoded" / "report.md").read_text()
    )
    assert "encoded item content" in (tmp_path / "encoded" / "report.md").read_text()


def _cold_config(shared_data, tmp_path, **eval_cfg):
    return {
        "name": "cold",
        "output_dir": str(tmp_path),
        "seeds": [0, 1],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "cold_item", "cold_fraction": 0.2},
        "eval": eval_cfg,
        "tune": {"trials": 2, "seed": 0},
        "models": [
            {"name": "mostpop"},
            {"name": "itemknn", "search": {"k": {"type": "int", "low": 5, "high": 100, "log": True}}},
            {"name": "contentknn", "params": {"feature": "genres"}, "baseline": True},
        ],
        "report": {"plots": False},
    }


def test_tuned_cold_item_run_reads_test_once_per_seed(shared_data, tmp_path, monkeypatch):
    from crossrec.eval.ranking import RankingEvaluator
    from crossrec.experiment import protocol, units
    from crossrec.models import MostPop

    test_evaluators, reads, builds = [], [], []

    def tagging_evaluator_for(target, train, valid=None, **kwargs):
        evaluator = evaluator_for(target, train, valid, **kwargs)
        if valid is not None:  # masking validation items: a test-split evaluator
            test_evaluators.append(evaluator)
        return evaluator

    def counting_evaluate(self, model):
        reads.append((self, type(model).__name__))
        return evaluate(self, model)

    def recording_build(name, **params):
        builds.append((name, params))
        return build_model(name, **params)

    evaluator_for, build_model = protocol.evaluator_for, units.build_model
    evaluate = RankingEvaluator.evaluate
    monkeypatch.setattr(protocol, "evaluator_for", tagging_evaluator_for)
    monkeypatch.setattr(RankingEvaluator, "evaluate", counting_evaluate)
    monkeypatch.setattr(units, "build_model", recording_build)
    monkeypatch.setattr(MostPop, "predicts_ratings", property(lambda self: True))

    result = run_experiment(_cold_config(shared_data, tmp_path), quiet=True)

    assert len(test_evaluators) == 3  # all items, warm items, cold items
    for evaluator in test_evaluators:  # 3 models x 2 seeds, and never during the 2-trial search
        assert sorted(name for ev, name in reads if ev is evaluator) == sorted(
            ["MostPop", "ItemKNN", "ContentKNN"] * 2
        )
    knn_builds = [params for name, params in builds if name == "itemknn"]
    summary = result.summary
    tuned = summary.models["itemknn"]
    assert len(tuned.tuning.trials) == 2 and len(knn_builds) == 2 + 2
    chosen = tuned.tuning.best_params["k"]
    assert tuned.params == {"k": chosen}
    assert [p["k"] for p in knn_builds[2:]] == [chosen, chosen]  # every seed trains the chosen k
    assert tuned.tuning.best_value == max(t.value for t in tuned.tuning.trials)
    assert summary.protocol.tuning.models == ["itemknn"]
    assert summary.protocol.tuning.sampler == tuned.tuning.sampler == "Optuna TPE"
    assert summary.models["contentknn"].baseline and summary.protocol.warm_cold

    for label, model in summary.models.items():
        for metric in ("recall@20", "warm_recall@20", "cold_recall@20", "warm_ndcg@10", "cold_ndcg@10"):
            assert model.test[metric].n == 2, (label, metric)
    content = summary.models["contentknn"].test
    with np.load(tmp_path / "cold" / "per_user.npz") as per_user:
        cold_users = per_user["users|cold_"]
        assert per_user["contentknn|cold_recall@20"].shape == cold_users.shape
        assert per_user["contentknn|cold_recall@20"].mean() == pytest.approx(content["cold_recall@20"].mean)
    assert content["cold_recall@20"].mean > 0  # content reaches items never seen in training
    assert content["recall@20"].mean != content["warm_recall@20"].mean
    mostpop = summary.models["mostpop"]
    assert mostpop.test["rmse"].mean > mostpop.test["mae"].mean > 0
    assert "rmse" in mostpop.valid and "rmse" not in tuned.test

    # itemknn beats mostpop by validation, but the comparison is with the one marked baseline
    assert summary.ranking_by_validation[:2] == ["itemknn", "mostpop"]
    assert (summary.significance.better, summary.significance.worse) == ("itemknn", "contentknn")
    assert summary.protocol.compared_with == "strongest baseline"
    report = (tmp_path / "cold" / "report.md").read_text()
    assert "2 Optuna TPE trials per model on the validation split only" in report
    assert "compared with the strongest baseline by validation, contentknn" in report
    assert "seeds [0, 1]" in report and "## Warm and cold items" in report and "| rmse | mae |" in report
    assert RunSummary.load(tmp_path / "cold" / "metrics.json") == summary


def test_cold_start_selection_reads_cold_validation(shared_data, tmp_path):
    config = _cold_config(shared_data, tmp_path, valid_on="cold")
    config["seeds"], config["models"] = [0], [config["models"][0], config["models"][2]]
    summary = run_experiment(config, quiet=True).summary
    assert (summary.protocol.valid_on, summary.protocol.selection_metric) == ("cold", "cold_recall@20")
    cold = {m: summary.models[m].valid["cold_recall@20"].mean for m in ("contentknn", "mostpop")}
    assert summary.ranking_by_validation == sorted(cold, key=cold.get, reverse=True)
    assert summary.significance.metric == "cold_recall@20"

    config["split"] = {"method": "random"}
    with pytest.raises(ConfigError, match="valid_on=cold needs a split with cold items"):
        run_experiment(config, quiet=True)


@pytest.mark.parametrize(
    ("baselines", "expected"),
    [
        ({"mostpop", "itemknn"}, ("itemknn", "strongest baseline")),  # the better of the two baselines
        ({"bpr", "mostpop"}, ("itemknn", "runner-up")),  # the best model is itself a baseline
        (set(), ("itemknn", "runner-up")),
    ],
)
def test_the_best_model_is_compared_with_the_strongest_baseline(baselines, expected):
    from crossrec.config import load_config
    from crossrec.experiment.protocol import opponent as _opponent

    names = ["mostpop", "itemknn", "bpr"]
    config = load_config({"models": [{"name": n, "baseline": n in baselines} for n in names]})
    assert _opponent(config, ["bpr", "itemknn", "mostpop"]) == expected
    assert _opponent(config, ["bpr"]) is None


def test_mmrec_protocol_leaves_validation_items_unmasked_at_test(shared_data, tmp_path):
    config = {
        "output_dir": str(tmp_path),
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "random"},
        "models": [{"name": "mostpop"}],
        "report": {"plots": False},
    }
    runs = {
        protocol: run_experiment({**config, "name": protocol, "eval": {"protocol": protocol}}, quiet=True)
        for protocol in ("crossrec", "mmrec")
    }
    ours, mmrec = (runs[p].summary for p in ("crossrec", "mmrec"))
    assert (ours.protocol.eval_protocol, ours.protocol.masked_at_test) == ("crossrec", ["train", "valid"])
    assert (mmrec.protocol.eval_protocol, mmrec.protocol.masked_at_test) == ("mmrec", ["train"])
    assert mmrec.models["mostpop"].valid == ours.models["mostpop"].valid  # validation alike
    # Popular validation items now take top-20 places a test item had: the test scores drop.
    assert mmrec.models["mostpop"].test["recall@20"].mean < ours.models["mostpop"].test["recall@20"].mean
    assert "eval.protocol: mmrec" in (tmp_path / "mmrec" / "report.md").read_text()


def test_a_categorical_grid_is_reported_as_the_grid_it_was(shared_data, tmp_path):
    config = {
        "name": "grid",
        "output_dir": str(tmp_path),
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "random"},
        "tune": {"trials": 2},
        "models": [{"name": "itemknn", "search": {"k": {"type": "categorical", "choices": [10, 50]}}}],
        "report": {"plots": False},
    }
    summary = run_experiment(config, quiet=True).summary
    assert summary.protocol.tuning.sampler == summary.models["itemknn"].tuning.sampler == "grid search"
    assert summary.plots is None and "plots" not in json.loads(
        (tmp_path / "grid" / "metrics.json").read_text()
    )
    report = (tmp_path / "grid" / "report.md").read_text()
    assert "a grid search, every point of the grid once" in report and "TPE" not in report
