"""Explicit-rating prediction on movielens-small: matrix factorisation with the MSE loss and biases.

Temporal split (each user's latest 20% of ratings are validation + test), as configs/movielens_warm_cold.yaml.
A grid of embedding_dim x reg_weight is trained with early stopping on validation RMSE; the point with the
lowest validation RMSE (seed 0) is trained with every seed and the test split is read once per seed.
Beside it: the global mean of the training ratings, and the same model with the ranking monitor
(validation Recall@20) choosing its epoch, which is how rating models were selected before.

    python bench/rating_mf.py          # ~2 min on 2 CPU cores -> bench/results/rating_mf.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.data.loaders import load_dataset
from crossrec.data.splits import make_split
from crossrec.eval.ranking import evaluator_for
from crossrec.eval.rating import RatingValidator, rating_errors
from crossrec.io import write_json_atomic
from crossrec.models import BPRMF

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
BASE: dict[str, Any] = {"loss": "mse", "lr": 5e-3, "batch_size": 2048, "epochs": 200, "patience": 5}
GRID = {"embedding_dim": [16, 64], "reg_weight": [1e-3, 1e-2, 1e-1, 1.0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/movielens-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="bench/results/rating_mf.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    start = time.perf_counter()

    split = make_split(load_dataset("movielens", args.data), "temporal", holdout=0.2)
    ranking = evaluator_for(split.valid, split.train)
    by_rmse = RatingValidator(ranking, split.valid)

    grid = []
    for dim, reg in itertools.product(GRID["embedding_dim"], GRID["reg_weight"]):
        params = {**BASE, "embedding_dim": dim, "reg_weight": reg}
        model = BPRMF(**params, seed=args.seeds[0]).fit(split.train, valid=by_rmse)
        grid.append({"params": params, "valid_rmse": rating_errors(model, split.valid)["rmse"]})
        console.print(f"dim {dim} reg {reg}: valid RMSE {grid[-1]['valid_rmse']:.4f}")
    chosen = min(grid, key=lambda g: g["valid_rmse"])["params"]

    def seeds_on_test(validator: Any) -> dict[str, Any]:
        errors = []
        for seed in args.seeds:
            model = BPRMF(**chosen, seed=seed).fit(split.train, valid=validator)
            errors.append(rating_errors(model, split.test))  # the one read of the test split
        return {
            k: (float(np.mean([e[k] for e in errors])), float(np.std([e[k] for e in errors], ddof=1)))
            for k in ("rmse", "mae")
        }

    mean = float(np.mean(split.train.value))
    truth = split.test.value
    rows = {
        "global mean": {
            "rmse": (float(np.sqrt(np.mean((truth - mean) ** 2))), 0.0),
            "mae": (float(np.mean(np.abs(truth - mean))), 0.0),
        },
        "MF + biases, epoch by valid RMSE": seeds_on_test(by_rmse),
        "MF + biases, epoch by valid Recall@20": seeds_on_test(ranking),
    }
    title = f"movielens-small temporal, test ratings ({len(split.test):,}), {len(args.seeds)} seeds"
    table = Table(title=title)
    for col in ("predictor", "RMSE", "MAE"):
        table.add_column(col)
    for name, row in rows.items():
        table.add_row(name, *(f"{row[k][0]:.4f} ± {row[k][1]:.4f}" for k in ("rmse", "mae")))
    console.print(table)
    console.print(f"chosen on validation RMSE: {chosen}")
    write_json_atomic(
        args.results,
        {
            "command": "python bench/rating_mf.py",
            "grid": grid,
            "chosen": chosen,
            "seeds": args.seeds,
            "test": {k: {m: list(v) for m, v in row.items()} for k, row in rows.items()},
            "wall_seconds": time.perf_counter() - start,
        },
    )


if __name__ == "__main__":
    main()
