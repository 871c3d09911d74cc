"""Run bundles: a run keeps what serving needs, verified on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import crossrec
from crossrec.experiment import BundleError, run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    config = {
        "name": "bundled",
        "output_dir": str(tmp),
        "seeds": [0, 1],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [
            {"name": "mostpop"},
            {"name": "lightgcn", "params": {"epochs": 4, "embedding_dim": 16, "lr": 0.01}},
            {"name": "contentknn", "params": {"feature": "genres"}},
        ],
        "bundle": {"all_seeds": True},
        "report": {"plots": False},
    }
    return run_experiment(config, quiet=True)


def test_bundle_recommends_what_the_chosen_seed_scores(bundle_run):
    bundle = crossrec.load_bundle(bundle_run.bundle_dir, "lightgcn")
    entry = bundle.manifest["models"]["lightgcn"]
    runs = {r.seed: r for r in bundle_run.runs if r.label == "lightgcn"}
    best = max(runs, key=lambda s: runs[s].valid["recall@20"])
    assert entry["seed"] == best  # the seed chosen by validation
    trained = runs[best].model()
    user_id = bundle.user_ids[7]
    recs = bundle.recommend(user_id, k=10)
    scores = trained.score(np.array([7])).numpy()[0]
    seen = set(bundle.seen[7].indices)
    expected = [i for i in np.argsort(-scores, kind="stable") if i not in seen][:10]
    assert [r[0] for r in recs] == [str(bundle.item_ids[i]) for i in expected]
    assert set(entry["seeds"]) == {"0", "1"}
    # The network came back around the saved weights: it reproduces the saved final embeddings.
    assert bundle.model.net is not None
    np.testing.assert_allclose(
        bundle.model._propagate()[1].detach().numpy(), trained.item_vectors(), atol=1e-5
    )


def test_bundle_carries_items_features_and_the_default_model(bundle_run):
    bundle = crossrec.load_bundle(bundle_run.bundle_dir)
    assert bundle.label == bundle_run.summary.ranking_by_validation[0]
    assert len(bundle.items) == len(bundle.item_ids) and bundle.items[0]["title"]
    genres = bundle.features["genres"]
    assert genres.matrix.shape[0] == len(bundle.item_ids) and genres.present.dtype == bool
    with pytest.raises(KeyError, match="unknown user id 'nobody'"):
        bundle.recommend("nobody")


@pytest.mark.parametrize("damage", ["changed", "missing", "schema"])
def test_a_damaged_bundle_is_refused_naming_the_file(bundle_run, tmp_path, damage):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_run.bundle_dir, copy)
    if damage == "changed":
        with open(copy / "models" / "lightgcn.pt", "ab") as fh:
            fh.write(b"x")
        match = r"models/lightgcn.pt was changed"
    elif damage == "missing":
        (copy / "items.jsonl").unlink()
        match = r"items.jsonl is missing"
    else:
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["schema_version"] = 99
        (copy / "manifest.json").write_text(json.dumps(manifest))
        match = "schema version 99"
    with pytest.raises(BundleError, match=match):
        crossrec.load_bundle(copy)
    with pytest.raises(BundleError, match="no model 'nope'"):
        crossrec.load_bundle(bundle_run.bundle_dir, "nope")
