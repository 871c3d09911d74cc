"""Full-ranking evaluation and batch top-k sharded over a real Ray cluster on loopback equal the
local path's, metric for metric and list for list."""

from __future__ import annotations

import numpy as np
import pytest
import ray  # a dev dependency: these tests never skip
from ray_cluster import IP, loopback_cluster

from crossrec.data.loaders import load_dataset
from crossrec.data.splits import make_split
from crossrec.eval.ranking import evaluator_for
from crossrec.eval.sharded import batch_top_k, evaluate_sharded, top_k_sharded
from crossrec.models import build_model

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_sharded_evaluation_and_top_k_equal_the_local_path(shared_data):
    dataset = load_dataset("movielens", shared_data / "movielens-small", posters=False)
    split = make_split(dataset, "temporal", holdout=0.2)
    model = build_model("bpr", epochs=3, embedding_dim=16, seed=0)
    model.fit(split.train)
    evaluator = evaluator_for(split.test, split.train, split.valid, batch_size=128)
    local = evaluator.evaluate(model)
    users = np.arange(split.train.n_users)
    exclude = split.train.to_csr()
    local_top = batch_top_k(model, users, 20, exclude, batch_size=100)
    with loopback_cluster(workers=1, cpus=1) as (address, _):
        ray.init(address=address, _node_ip_address=IP, logging_level="ERROR")
        try:
            sharded = evaluate_sharded(evaluator, model, shards=3)
            sharded_top = top_k_sharded(model, users, 20, exclude, shards=4, batch_size=100)
        finally:
            ray.shutdown()
    assert len(evaluator.shards(3)) == 3
    assert sharded.metrics == local.metrics
    assert all(np.array_equal(sharded.per_user[m], local.per_user[m]) for m in local.per_user)
    assert np.array_equal(sharded.top_items, local.top_items) and np.array_equal(sharded_top, local_top)
    # masked: no user's training item is in their top 20
    assert not any(set(local_top[u]) & set(exclude[u].indices) for u in users)
