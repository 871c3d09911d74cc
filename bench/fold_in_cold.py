"""The two serving capabilities of the model contract, measured on movielens-small.

(a) Fold-in: test users' vectors rebuilt from their training history only (`model.fold_in`, no
    retraining), against the trained vectors: test Recall@20 of each and their ratio. The fold-in
    L2 weight is chosen on validation (the validation users' Recall@20), never on test.
(b) Content -> item vector: on the cold-item split, the cold items' vectors replaced by
    `model.embed_items(their features)`, as for items the model never saw; cold Recall@20 when cold
    items are ranked among the cold test items only and among all items.

    python bench/fold_in_cold.py            # writes bench/results/fold_in_cold.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.config import load_config
from crossrec.data.features import as_feature_set
from crossrec.data.loaders import load_dataset
from crossrec.data.splits import make_split
from crossrec.eval.ranking import evaluator_for
from crossrec.experiment import encode_items
from crossrec.io import write_json_atomic
from crossrec.models import build_model
from crossrec.models.base import EmbeddingRecommender

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


class Vectors(EmbeddingRecommender):
    """Fixed user and item vectors, scored by dot product (what a server would hold)."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        super().__init__()
        self._u, self._i = torch.as_tensor(users), torch.as_tensor(items)
        self.n_users, self.n_items = len(users), len(items)

    def fit(self, train, item_features=None, valid=None):  # type: ignore[no-untyped-def]
        return self

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._u, self._i


def fold_in_part(dataset, console: Console) -> dict:
    split = make_split(dataset, "temporal", holdout=0.2)
    histories = split.train.to_csr(binary=False)
    valid_eval = evaluator_for(split.valid, split.train, monitor="recall@20")
    test_eval = evaluator_for(split.test, split.train, split.valid, monitor="recall@20")
    rows = []
    for name, params in (
        (
            "lightgcn",
            {"embedding_dim": 64, "n_layers": 2, "lr": 0.005, "epochs": 200, "patience": 4, "eval_every": 2},
        ),
        ("bpr", {"embedding_dim": 64, "lr": 0.005, "epochs": 200, "patience": 4, "eval_every": 2}),
    ):
        model = build_model(name, seed=0, **params)
        model.fit(split.train, valid=valid_eval)
        items = model.item_vectors()
        best = None
        for l2 in L2_GRID:
            model.fold_in_l2 = l2
            users = model.fold_in(histories)
            score = valid_eval.evaluate(Vectors(users, items)).metrics["recall@20"]
            if best is None or score > best[1]:
                best = (l2, score)
        model.fold_in_l2 = best[0]
        start = time.perf_counter()
        folded = model.fold_in(histories[test_eval.users])
        seconds = time.perf_counter() - start
        users = model.user_vectors().copy()
        users[test_eval.users] = folded
        trained = test_eval.evaluate(model).metrics["recall@20"]
        rebuilt = test_eval.evaluate(Vectors(users, items)).metrics["recall@20"]
        rows.append(
            {
                "model": name,
                "l2_chosen_on_validation": best[0],
                "test_recall@20_trained": trained,
                "test_recall@20_fold_in": rebuilt,
                "ratio": rebuilt / trained,
                "fold_in_ms_per_user": 1000 * seconds / len(test_eval.users),
            }
        )
        console.print(rows[-1])
    return {"split": split.summary(), "rows": rows}


def cold_part(dataset, features, console: Console) -> dict:
    split = make_split(dataset, "cold_item", cold_fraction=0.1, ratios=(0.8, 0.1, 0.1), seed=0)
    cold = split.cold_items
    cold_test = np.intersect1d(cold, split.test.item)
    valid_eval = evaluator_for(split.valid, split.train, monitor="recall@20")
    among_cold = evaluator_for(split.test, split.train, split.valid, candidate_items=cold_test)
    among_all = evaluator_for(split.test.select(np.isin(split.test.item, cold)), split.train, split.valid)
    rows = []
    for name, params in (
        (
            "alpharec",
            {
                "embedding_dim": 64,
                "hidden_dim": 64,
                "n_layers": 2,
                "modalities": ["text", "genres"],
                "n_negatives": 16,
                "lr": 0.001,
                "epochs": 200,
                "patience": 4,
                "eval_every": 2,
            },
        ),
        (
            "vbpr",
            {
                "embedding_dim": 64,
                "modalities": ["text", "genres"],
                "lr": 0.005,
                "epochs": 200,
                "patience": 4,
                "eval_every": 2,
            },
        ),
        (
            "freedom",
            {
                "embedding_dim": 64,
                "n_layers": 2,
                "modalities": ["text", "genres"],
                "edge_keep": 1.0,
                "lr": 0.005,
                "modality_loss_weight": 0.1,
                "epochs": 200,
                "patience": 4,
                "eval_every": 2,
            },
        ),
        ("contentknn", {"feature": "text"}),
    ):
        model = build_model(name, seed=0, **params)
        model.fit(split.train, features, valid_eval)
        items = model.item_vectors().copy()
        row = {"model": name}
        row["cold_recall@20_among_cold_offline"] = among_cold.evaluate(model).metrics["recall@20"]
        row["cold_recall@20_among_all_offline"] = among_all.evaluate(model).metrics["recall@20"]
        items[cold] = model.embed_items({n: f.take(cold) for n, f in features.items()})
        mapped = Vectors(model.user_vectors(), items)
        row["cold_recall@20_among_cold_mapped"] = among_cold.evaluate(mapped).metrics["recall@20"]
        row["cold_recall@20_among_all_mapped"] = among_all.evaluate(mapped).metrics["recall@20"]
        rows.append(row)
        console.print(row)
    return {"split": split.summary(), "cold_test_items": len(cold_test), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fold_in_cold.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    console = Console()
    dataset = load_dataset("movielens", args.data)
    config = load_config(
        {
            "encode": {
                "cache_dir": str(ROOT / ".cache" / "embeddings"),
                "models": {
                    "text": {"fields": ["title", "genres", "tags", "overview"]},
                    "image": None,
                    "audio": None,
                },
            }
        }
    )
    encoded = encode_items(config, dataset, quiet=True).features
    features = {**as_feature_set(dataset.content.features), **encoded}
    results = {
        "fold_in": fold_in_part(dataset, console),
        "content_to_item": cold_part(dataset, features, console),
    }
    table = Table(title="fold-in (movielens temporal, test users)")
    for col in ("model", "l2", "R@20 trained", "R@20 fold-in", "ratio", "ms/user"):
        table.add_column(col)
    for r in results["fold_in"]["rows"]:
        table.add_row(
            r["model"],
            f"{r['l2_chosen_on_validation']:g}",
            f"{r['test_recall@20_trained']:.4f}",
            f"{r['test_recall@20_fold_in']:.4f}",
            f"{r['ratio']:.3f}",
            f"{r['fold_in_ms_per_user']:.2f}",
        )
    console.print(table)
    table = Table(title="content -> item vector (movielens cold-item split, cold test items)")
    for col in (
        "model",
        "among cold: offline",
        "among cold: mapped",
        "among all: offline",
        "among all: mapped",
    ):
        table.add_column(col)
    for r in results["content_to_item"]["rows"]:
        table.add_row(
            r["model"],
            *(
                f"{r[f'cold_recall@20_among_{w}_{s}']:.4f}"
                for w, s in (("cold", "offline"), ("cold", "mapped"), ("all", "offline"), ("all", "mapped"))
            ),
        )
    console.print(table)
    write_json_atomic(args.out, {"command": "python bench/fold_in_cold.py", **results})


if __name__ == "__main__":
    main()
