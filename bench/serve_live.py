"""Live serving against offline evaluation of the same bundle, through the HTTP API (FastAPI's test
client: the real app, in-process).

(a) Cold items: a bundle trained on the movielens cold-item split; every cold test item is inserted
    again through `PUT /items/{id}` with its text fields only (a fresh id, so nothing of the trained
    vector is reused), and each test user's top 20 among the inserted items (`filter`) is compared
    with their cold test items: Recall@20 beside the offline cold Recall@20 of the same bundle.
(b) New users: test users of a temporal-split bundle are served as brand-new ids whose training
    histories are replayed as feedback events (`POST /feedback`); Recall@20 of `GET
    /users/{id}/recommendations` (validation items excluded, as offline) beside the offline Recall@20
    of the trained vectors and of offline fold-in.

    python bench/serve_live.py          # writes bench/results/serve_live.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from crossrec.eval.ranking import evaluator_for
from crossrec.experiment import load_bundle, run_experiment
from crossrec.io import write_json_atomic
from crossrec.serve.app import create_app
from crossrec.serve.state import ServingState

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
TEXT = {"model": "all-MiniLM-L6-v2", "fields": ["title", "genres", "tags", "overview"]}
KEY = {"X-API-Key": "bench"}


def _config(name: str, split: dict, out: Path, model: dict) -> dict:
    return {
        "name": name,
        "output_dir": str(out),
        "threads": 2,
        "dataset": {"format": "movielens", "path": str(DATA), "options": {"posters": False}},
        "encode": {
            "cache_dir": str(ROOT / ".cache" / "embeddings"),
            "models": {"text": TEXT, "image": None, "audio": None},
        },
        "split": split,
        "models": [model],
        "report": {"plots": False},
    }


def _recall(recommended: list[str], relevant: set[str]) -> float:
    return len(set(recommended) & relevant) / len(relevant)


def cold_items(out: Path, console: Console) -> dict:
    model = {
        "name": "alpharec",
        "params": {
            "hidden_dim": 64,
            "modalities": ["text"],
            "n_negatives": 16,
            "lr": 1e-3,
            "temperature": 0.1,
            "epochs": 200,
            "patience": 4,
            "eval_every": 2,
        },
    }
    run = run_experiment(
        _config("serve-cold", {"method": "cold_item", "cold_fraction": 0.1}, out, model), quiet=True
    )
    offline = run.summary.models["alpharec"].test["cold_recall@20"].mean
    bundle = load_bundle(run.bundle_dir)
    client = TestClient(create_app(ServingState(bundle), api_key="bench"))
    split, ids = bundle.split, np.array([str(i) for i in bundle.item_ids])
    cold_test = np.intersect1d(split.cold_items, split.test.item)
    start = time.perf_counter()
    for item in cold_test:
        row = {k: v for k, v in bundle.items[item].items() if k not in ("id", "image", "audio")}
        row["batch"] = "inserted"
        response = client.put(f"/items/new-{ids[item]}", data={"metadata": json.dumps(row)}, headers=KEY)
        assert response.status_code == 200, response.text
    insert_ms = 1000 * (time.perf_counter() - start) / len(cold_test)
    test = split.test.select(np.isin(split.test.item, cold_test))
    recalls = []
    for user in np.unique(test.user):
        relevant = {f"new-{ids[i]}" for i in test.item[test.user == user]}
        got = client.get(
            f"/users/{bundle.user_ids[user]}/recommendations", params={"k": 20, "filter": "batch=inserted"}
        )
        recalls.append(_recall([r["item_id"] for r in got.json()["items"]], relevant))
    row = {
        "offline_cold_recall@20": offline,
        "api_cold_recall@20": float(np.mean(recalls)),
        "users": len(recalls),
        "inserted_items": len(cold_test),
        "insert_ms_per_item": insert_ms,
    }
    console.print(row)
    return row


def new_users(out: Path, console: Console) -> dict:
    model = {
        "name": "lightgcn",
        "params": {"n_layers": 2, "lr": 0.005, "epochs": 200, "patience": 4, "eval_every": 2},
    }
    run = run_experiment(
        _config("serve-users", {"method": "temporal", "holdout": 0.2}, out, model), quiet=True
    )
    bundle = load_bundle(run.bundle_dir)
    split = bundle.split
    state = ServingState(bundle)
    # The fold-in weight chosen on validation users, as bench/fold_in_cold.py does.
    valid = evaluator_for(split.valid, split.train, monitor="recall@20")
    best = max((1e-3, 1e-2, 1e-1, 1.0), key=lambda l2: _fold_valid(bundle, valid, l2))
    bundle.model.fold_in_l2 = best
    client = TestClient(create_app(state, api_key="bench"))
    test = evaluator_for(split.test, split.train, split.valid)
    trained = test.evaluate(bundle.model).metrics["recall@20"]
    train, valid_csr, test_csr = (p.to_csr() for p in (split.train, split.valid, split.test))
    ids = np.array([str(i) for i in bundle.item_ids])
    recalls, start = [], time.perf_counter()
    for user in test.users:
        new_id = f"replayed-{bundle.user_ids[user]}"
        events = [
            {"user_id": new_id, "item_id": ids[i], "kind": "rating", "value": 1.0}
            for i in train[user].indices
        ]
        for lo in range(0, len(events), 1000):  # the API takes batches of up to 1,000 events
            batch = {"events": events[lo : lo + 1000]}
            assert client.post("/feedback", json=batch, headers=KEY).status_code == 200
        # Validation items are masked offline: ask for 20 more than there are and drop them here.
        held = set(ids[valid_csr[user].indices])
        got = client.get(f"/users/{new_id}/recommendations", params={"k": min(200, 20 + len(held))})
        ranked = [r["item_id"] for r in got.json()["items"] if r["item_id"] not in held][:20]
        recalls.append(_recall(ranked, set(ids[test_csr[user].indices])))
    per_user_ms = 1000 * (time.perf_counter() - start) / len(test.users)
    row = {
        "fold_in_l2": best,
        "offline_recall@20_trained": trained,
        "api_new_user_recall@20": float(np.mean(recalls)),
        "users": len(recalls),
        "ms_per_user_replay_and_recommend": per_user_ms,
    }
    console.print(row)
    return row


def _fold_valid(bundle, valid, l2: float) -> float:
    from crossrec.models.base import EmbeddingRecommender

    bundle.model.fold_in_l2 = l2
    users = bundle.model.fold_in(bundle.split.train.to_csr())
    items = bundle.model.item_vectors()

    class Fixed(EmbeddingRecommender):
        def fit(self, *a, **k):
            return self

        def _embeddings(self):
            return torch.as_tensor(users), torch.as_tensor(items)

    return valid.evaluate(Fixed()).metrics["recall@20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_live.json")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-serve")
    args = parser.parse_args()
    torch.set_num_threads(2)
    console = Console()
    results = {"cold_items": cold_items(args.runs, console), "new_users": new_users(args.runs, console)}
    table = Table(title="live serving vs offline evaluation of the same bundle (movielens-small)")
    for col in ("what", "offline", "through the API", "n"):
        table.add_column(col)
    c, u = results["cold_items"], results["new_users"]
    table.add_row(
        "cold items inserted by PUT, cold R@20",
        f"{c['offline_cold_recall@20']:.4f}",
        f"{c['api_cold_recall@20']:.4f}",
        f"{c['users']} users",
    )
    table.add_row(
        "new user ids replaying training histories, R@20",
        f"{u['offline_recall@20_trained']:.4f} (trained)",
        f"{u['api_new_user_recall@20']:.4f}",
        f"{u['users']} users",
    )
    console.print(table)
    write_json_atomic(args.out, {"command": "python bench/serve_live.py", **results})


if __name__ == "__main__":
    main()
