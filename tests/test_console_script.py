"""The installed `crossrec` command, run as a user runs it: a separate process, real data, small settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import crossrec

pytestmark = pytest.mark.slow

CROSSREC = Path(sys.executable).parent / "crossrec"


def _crossrec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`crossrec ARGS` in `cwd`, importing this checkout's code, whatever is installed."""
    assert CROSSREC.is_file(), f"the console script is not installed beside {sys.executable}"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(crossrec.__file__).parents[1]),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    return subprocess.run(
        [str(CROSSREC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _movielens(shared_data: Path) -> dict[str, object]:
    return {
        "format": "movielens",
        "path": str(shared_data / "movielens-small"),
        "options": {"posters": False, "overviews": False},  # ratings, titles, genres and tags only
    }


def _write(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_writes_the_report(shared_data: Path, tmp_path: Path) -> None:
    config = {
        "name": "cli-run",
        "output_dir": str(tmp_path / "runs"),
        "dataset": {
            **_movielens(shared_data),
            "options": {"min_rating": 4.5, "posters": False, "overviews": False},
        },
        "split": {"method": "random"},
        "models": [
            {"name": "mostpop"},
            {"name": "lightgcn", "params": {"embedding_dim": 8, "n_layers": 1, "epochs": 2}},
        ],
        "report": {"plots": False},
    }
    done = _crossrec("run", str(_write(tmp_path / "exp.yaml", config)), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "cli-run"
    assert {"report.md", "metrics.json", "config.yaml", "split.npz"} <= {p.name for p in run_dir.iterdir()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"mostpop", "lightgcn"}
    assert 0 < metrics["models"]["lightgcn"]["test"]["recall@20"]["mean"] < 1
    assert "lightgcn" in done.stdout and "lightgcn" in (run_dir / "report.md").read_text()


def test_encode_fills_the_cache(shared_data: Path, tmp_path: Path) -> None:
    config = {
        "name": "cli-encode",
        "dataset": _movielens(shared_data),
        "encode": {
            "cache_dir": str(tmp_path / "cache"),
            "max_items": 20,
            "models": {"text": {"fields": ["title", "genres"]}, "image": None, "audio": None},
        },
    }
    done = _crossrec("encode", str(_write(tmp_path / "encode.yaml", config)), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"text: 20 of [\d,]+ items, 384-d", done.stdout), done.stdout
    report = json.loads((tmp_path / "cache" / "ingest_report-cli-encode.json").read_text())
    assert report["counts"]["text"]["encoded"] == 20
    assert list((tmp_path / "cache" / "text").glob("*/shard-*.npz"))
    assert not (tmp_path / "cache" / "image").exists() and not (tmp_path / "cache" / "audio").exists()


def test_demo_with_overrides(shared_data: Path, tmp_path: Path) -> None:
    models = (
        "[{name: mostpop}, {name: contentknn, label: content-text, params: {feature: text}},"
        " {name: lightgcn, params: {embedding_dim: 8, n_layers: 1, epochs: 2}}]"
    )
    overrides = [
        "seeds=[0]",
        "dataset.options={posters: false, overviews: false}",
        "encode.max_items=20",
        "encode.models.image=null",
        "encode.models.text.fields=[title, genres]",
        f"encode.cache_dir={tmp_path / 'cache'}",
        f"models={models}",
        "report.plots=false",
    ]
    args = ["demo", "--data", str(shared_data / "movielens-small"), "--output-dir", str(tmp_path), "--quiet"]
    done = _crossrec(*args, *(f"--set={item}" for item in overrides), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "demo-movielens"
    assert (run_dir / "report.md").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"mostpop", "content-text", "lightgcn"}
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["seeds"] == [0] and resolved["encode"]["max_items"] == 20
    assert resolved["dataset"]["path"] == str(shared_data / "movielens-small")
    assert json.loads((run_dir / "ingest_report.json").read_text())["counts"]["text"]["encoded"] == 20


def test_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    # A long path, as real ones are: the message must not be wrapped onto a second line.
    config = _write(tmp_path / ("a-folder-with-a-long-name-" * 3) / "exp.yaml", {"name": "bad"})
    for args, names in (
        (["run", str(config), "--set", "split.method=sideways"], ["split.method", str(config)]),
        (["run", str(tmp_path / "absent.yaml")], ["not found"]),
        (
            ["run", str(config), "--set", f"dataset.path={tmp_path / '[no such folder]'}"],
            ["[no such folder]"],
        ),
    ):
        done = _crossrec(*args, cwd=tmp_path)
        output = (done.stdout + done.stderr).strip()
        assert done.returncode == 2, output
        assert len(output.splitlines()) == 1 and output.startswith("error: "), output
        assert all(name in output for name in names), output


def test_a_model_that_diverges_exits_2_naming_model_seed_and_epoch(shared_data: Path, tmp_path: Path) -> None:
    config = _write(
        tmp_path / "diverge.yaml",
        {
            "name": "diverge",
            "output_dir": str(tmp_path / "runs"),
            "dataset": _movielens(shared_data),
            "split": {"method": "temporal", "holdout": 0.2},
            "models": [{"name": "bpr", "params": {"loss": "mse", "lr": 1.0e30, "epochs": 3}}],
        },
    )
    done = _crossrec("run", str(config), "--quiet", cwd=tmp_path)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert re.match(r"error: bpr \(seed 0\) failed at epoch 1: FloatingPointError: .*diverged", output), (
        output
    )
