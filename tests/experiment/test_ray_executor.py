"""The runner's units on a real Ray cluster on loopback: the same trials, choices and metrics as
the local executor for the same seeds, and a worker killed mid-run is retried with nothing lost or
counted twice."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import ray  # a dev dependency: these tests never skip
from ray_cluster import IP, loopback_cluster, node_processes

from crossrec.experiment import run_experiment
from crossrec.experiment.executor import RayExecutor
from crossrec.report.summary import RunSummary

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def cluster():
    with loopback_cluster(workers=1, cpus=1) as (address, tmp):
        ray.init(address=address, _node_ip_address=IP, logging_level="ERROR")
        try:
            yield address, tmp
        finally:
            ray.shutdown()


def _config(shared_data, out, name: str) -> dict:
    return {
        "name": name,
        "output_dir": str(out),
        "seeds": [0, 1, 2],
        "threads": 1,
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "temporal", "holdout": 0.2},
        "tune": {"trials": 2, "seed": 0},
        "models": [
            {
                "name": "bpr",
                "params": {"epochs": 8, "embedding_dim": 16},
                "search": {"lr": {"type": "categorical", "choices": [0.003, 0.03]}},
            }
        ],
        "report": {"plots": False},
    }


def _numbers(result) -> dict:
    summary = RunSummary.load(result.run_dir / "metrics.json")
    return {
        label: {
            "trials": m.tuning and sorted((t.number, t.params["lr"], t.value) for t in m.tuning.trials),
            "runs": [(r.seed, r.valid, r.test, r.epochs) for r in m.runs],
        }
        for label, m in summary.models.items()
    }


@pytest.fixture(scope="module")
def local(shared_data, tmp_path_factory):
    return _numbers(
        run_experiment(_config(shared_data, tmp_path_factory.mktemp("local"), "local"), quiet=True)
    )


def test_units_on_the_cluster_match_the_local_executor(shared_data, tmp_path, cluster, local):
    remote = run_experiment(_config(shared_data, tmp_path, "ray"), quiet=True, executor=RayExecutor())
    assert _numbers(remote) == local
    assert local["bpr"]["runs"] and len(local["bpr"]["trials"]) == 2


def test_a_worker_killed_mid_run_is_retried_and_nothing_is_lost_or_counted_twice(
    shared_data, tmp_path, cluster, local
):
    _, tmp = cluster
    killed: list[int] = []

    def kill_one_running_unit() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for proc in node_processes(tmp):
                try:
                    title = " ".join(proc.cmdline())
                except Exception:
                    continue
                if "_run_unit" in title:
                    time.sleep(0.5)  # mid-unit, not at its first instruction
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_running_unit)
    killer.start()
    remote = run_experiment(
        _config(shared_data, tmp_path, "killed"), quiet=True, executor=RayExecutor(max_retries=2)
    )
    killer.join()
    assert killed, "no running unit was found to kill"
    assert _numbers(remote) == local
    units = sorted(p.name for p in (remote.run_dir / "units").glob("*.json"))
    assert len(units) == len(set(units)) == 2 + 3  # two trials and three seeds, each recorded once
