"""An interrupted run resumes: kill -9 a real `crossrec run` mid-way, resume it, compare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crossrec.report.summary import RunSummary

pytestmark = pytest.mark.slow

CROSSREC = Path(sys.executable).parent / "crossrec"


def _config(shared_data: Path, out: Path, name: str) -> Path:
    config = {
        "name": name,
        "output_dir": str(out),
        "seeds": [0, 1, 2],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "temporal", "holdout": 0.2},
        "tune": {"trials": 3, "seed": 0},
        "models": [
            {
                "name": "bpr",
                "params": {"epochs": 6, "embedding_dim": 16},
                "search": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
            },
            {"name": "lightgcn", "params": {"epochs": 6, "embedding_dim": 16, "lr": 0.01}},
        ],
        "report": {"plots": False},
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _metrics(run_dir: Path) -> dict:
    summary = RunSummary.load(run_dir / "metrics.json")
    return {
        label: {
            "tuning": m.tuning and [(t.params, t.value) for t in m.tuning.trials],
            "runs": [(r.seed, r.valid, r.test, r.epochs) for r in m.runs],
        }
        for label, m in summary.models.items()
    }


def test_a_killed_run_resumes_to_the_uninterrupted_metrics(shared_data, tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    full = _config(shared_data, tmp_path, "full")
    subprocess.run([str(CROSSREC), "run", str(full), "--quiet"], check=True, env=env, capture_output=True)

    killed = _config(shared_data, tmp_path, "killed")
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [str(CROSSREC), "run", str(killed), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    # Kill once the tuning is over and at least one seed is fitted, but before the run ends.
    while not list((run_dir / "units").glob("fit-bpr-seed*.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    done_before = sorted(p.name for p in (run_dir / "units").glob("*.json"))
    assert any(n.startswith("trial-") for n in done_before)

    resumed = subprocess.run(
        [str(CROSSREC), "run", "--resume", str(run_dir), "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _metrics(run_dir) == _metrics(tmp_path / "full")
    assert (run_dir / "bundle" / "manifest.json").is_file()
