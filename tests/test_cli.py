from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crossrec.cli import app

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
