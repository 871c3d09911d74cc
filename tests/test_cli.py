from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crossrec.cli import _print_table, app
from crossrec.report.summary import RunSummary

runner = CliRunner()


def test_user_errors_are_one_line_without_traceback(tmp_path):
    missing = runner.invoke(app, ["run", str(tmp_path / "absent.yaml")])
    assert missing.exit_code == 2
    assert "not found" in missing.output and "Traceback" not in missing.output

    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"dataset: {{format: diffmm, path: {tmp_path / 'nowhere'}}}\nsplit: {{method: shipped}}\n")
    bad_data = runner.invoke(app, ["run", str(cfg), "--set", f"output_dir={tmp_path}"])
    assert bad_data.exit_code == 2
    assert "nowhere" in bad_data.output and "Traceback" not in bad_data.output


def test_the_table_shows_f1_beside_the_other_metrics(capsys):
    model = {
        "model": "itemknn",
        "params": {},
        "valid": {},
        "test": {
            "recall@20": {"mean": 0.25, "std": 0.0, "n": 2},
            "f1@20": {"mean": 0.125, "std": 0.01, "n": 2},
        },
        "fit_seconds": {"mean": 3.0, "std": 0.0, "n": 2},
        "runs": [],
    }
    protocol = {"users_evaluated_at_test": 5, "ks": [10, 20], "monitor": "recall@20", "seeds": [0, 1]}
    summary = RunSummary.from_dict(
        {
            "name": "t",
            "dataset": {},
            "split": {},
            "protocol": protocol,
            "models": {"knn": model},
            "ranking_by_validation": ["knn"],
            "significance_sentence": "knn stands alone.",
        }
    )
    _print_table(summary)
    out = capsys.readouterr().out
    assert "t: test metrics @20" in out and "knn stands alone." in out
    header = next(line for line in out.splitlines() if "recall" in line).split("┃")
    assert [h.strip() for h in header[2:6]] == ["recall", "ndcg", "precision", "f1"]
    row = next(line for line in out.splitlines() if "knn" in line and "0.2500" in line)
    assert [c.strip() for c in row.split("│")[2:6]] == ["0.2500±.000", "–", "–", "0.1250±.010"]


@pytest.mark.slow
def test_run_prints_the_table(shared_data, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"name: cli\noutput_dir: {tmp_path}\n"
        f"dataset: {{format: movielens, path: {shared_data / 'movielens-small'}}}\n"
        "split: {method: random}\nmodels: [{name: mostpop}, {name: itemknn}]\n"
    )
    result = runner.invoke(app, ["run", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "recall@20" in result.output and "itemknn" in result.output
    assert (tmp_path / "cli" / "report.md").is_file()
