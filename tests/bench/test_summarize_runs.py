"""Paired tests across run folders: two real runs on one split compare; different splits are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from crossrec.eval.stats import paired_test
from crossrec.experiment import run_experiment

pytestmark = pytest.mark.slow

_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "summarize_runs.py"
_spec = importlib.util.spec_from_file_location("summarize_runs", _SCRIPT)
summarize_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize_runs)


@pytest.fixture(scope="module")
def runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three real runs on movielens-small: two on the same random split, one on another seed's split."""
    out = tmp_path_factory.mktemp("runs")

    def run(name: str, models: list[dict], split_seed: int = 0, protocol: str = "crossrec") -> Path:
        config = {
            "name": name,
            "output_dir": str(out),
            "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
            "split": {"method": "random", "seed": split_seed},
            "eval": {"protocol": protocol},
            "models": models,
            "report": {"plots": False},
        }
        return run_experiment(config, quiet=True).run_dir

    return {
        "a": run("a", [{"name": "itemknn", "params": {"k": 50}}]),
        "b": run("b", [{"name": "mostpop"}, {"name": "itemknn", "label": "knn10", "params": {"k": 10}}]),
        "other_split": run("c", [{"name": "mostpop"}], split_seed=1),
        "mmrec": run("d", [{"name": "mostpop"}], protocol="mmrec"),
    }


def test_models_of_two_runs_on_one_split_are_paired_user_by_user(runs: dict[str, Path]) -> None:
    result = summarize_runs.compare_across(f"{runs['a']}:itemknn>{runs['b']}:mostpop@ndcg@20")
    with np.load(runs["a"] / "per_user.npz") as a, np.load(runs["b"] / "per_user.npz") as b:
        assert np.array_equal(a["users|"], b["users|"])
        expected = paired_test("ndcg@20", "x", a["itemknn|ndcg@20"], "y", b["mostpop|ndcg@20"])
    assert (result.better, result.worse) == ("itemknn (a)", "mostpop (b)")
    assert result.n_users == expected.n_users > 0
    assert result.mean_difference == pytest.approx(expected.mean_difference)
    assert result.p_value_t == pytest.approx(expected.p_value_t)
    means = {run: json.loads((runs[run] / "metrics.json").read_text())["models"] for run in ("a", "b")}
    gap = means["a"]["itemknn"]["test"]["ndcg@20"]["mean"] - means["b"]["mostpop"]["test"]["ndcg@20"]["mean"]
    assert result.mean_difference == pytest.approx(gap)


def test_runs_on_different_splits_or_protocols_are_refused(runs: dict[str, Path], capsys) -> None:
    with pytest.raises(ValueError, match=r"hold different splits \(random-0 vs random-1\): their train"):
        summarize_runs.compare_across(f"{runs['a']}:itemknn>{runs['other_split']}:mostpop@recall@20")
    with pytest.raises(ValueError, match=r"masks train, valid at test and .* train .*eval.protocol differs"):
        summarize_runs.compare_across(f"{runs['a']}:itemknn>{runs['mmrec']}:mostpop@recall@20")
    with pytest.raises(ValueError, match=r"has no 'lightgcn\|recall@20' \(models: knn10, mostpop\)"):
        summarize_runs.compare_across(f"{runs['a']}:itemknn>{runs['b']}:lightgcn@recall@20")
    with pytest.raises(ValueError, match="must look like RUN:LABEL>RUN:LABEL@METRIC"):
        summarize_runs.compare_across(f"{runs['a']}>{runs['b']}@recall@20")

    assert summarize_runs.main(["--across", f"{runs['b']}:knn10>{runs['a']}:itemknn@recall@20"]) == 0
    assert "knn10 (b) is" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        summarize_runs.main(["--across", f"{runs['a']}:itemknn>{runs['other_split']}:mostpop@recall@20"])
    assert exit_.value.code == 2
