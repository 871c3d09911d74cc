"""Data-parallel training with Ray Train (gloo, CPU) on a real loopback cluster: two workers reach
the validation metric of one, and one worker trains exactly like the plain loop."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from ray_cluster import IP, loopback_cluster

from crossrec.data.loaders import load_dataset
from crossrec.data.splits import make_split
from crossrec.eval.ranking import evaluator_for
from crossrec.models import build_model
from crossrec.models.data_parallel import fit_data_parallel

pytestmark = [pytest.mark.slow, pytest.mark.ray]
PARAMS = {"epochs": 4, "embedding_dim": 32, "lr": 0.01, "eval_every": 2, "patience": 10, "quiet": True}


def test_two_workers_reach_the_validation_metric_of_one(shared_data, tmp_path):
    dataset = load_dataset("movielens", shared_data / "movielens-small", posters=False)
    split = make_split(dataset, "temporal", holdout=0.2)
    valid = evaluator_for(split.valid, split.train, monitor="recall@20")
    plain = build_model("bpr", seed=0, **PARAMS)
    plain.fit(split.train, valid=valid)
    with loopback_cluster(workers=1, cpus=2) as (address, _):
        ray.init(address=address, _node_ip_address=IP, logging_level="ERROR")
        try:
            one = fit_data_parallel(
                "bpr", PARAMS, split.train, valid=valid, workers=1, storage=tmp_path / "1"
            )
            two = fit_data_parallel(
                "bpr", PARAMS, split.train, valid=valid, workers=2, storage=tmp_path / "2"
            )
        finally:
            ray.shutdown()
    scores = {name: valid(m)["recall@20"] for name, m in (("plain", plain), ("one", one), ("two", two))}
    assert np.allclose(one.item_vectors(), plain.item_vectors(), atol=1e-4)
    assert abs(scores["two"] - scores["one"]) <= 0.1 * scores["one"]
    assert len(two.history) == PARAMS["epochs"]
