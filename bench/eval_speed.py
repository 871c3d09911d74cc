"""Full-ranking evaluation speed on Amazon Sports: every test user (35,598) against every item (18,357).

Times `evaluator_for(test, train, valid).evaluate(model)` (score, mask train + valid items, top-k,
metrics) for MostPop and for a 64-d embedding model (LightGCN's scoring path with random
embeddings: the speed does not depend on what the vectors learned), side by side in one run.

    python bench/eval_speed.py                 # 2 torch threads, median of 3 runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Passive OpenMP waiting: spinning threads slow 3-5x when another process is busy (set before torch).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from crossrec.data.loaders import load_dataset
from crossrec.eval.ranking import RankingEvaluator, evaluator_for
from crossrec.io import write_json_atomic
from crossrec.models import LightGCN, MostPop, Recommender

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "diffmm" / "sports"
DEFAULT_OUT = ROOT / "bench" / "results" / "eval_speed.json"
LIMIT_SECONDS = 10.0


def random_lightgcn(n_users: int, n_items: int, dim: int, seed: int) -> LightGCN:
    """A LightGCN holding random final embeddings, loaded through its save/load state."""
    gen = torch.Generator().manual_seed(seed)
    user, item = torch.randn(n_users, dim, generator=gen), torch.randn(n_items, dim, generator=gen)
    model = LightGCN(embedding_dim=dim)
    model.n_users, model.n_items = n_users, n_items
    model._load_state({"user_final": user, "item_final": item})
    return model


def time_it(evaluator: RankingEvaluator, model: Recommender, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluator.evaluate(model)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    split = load_dataset("diffmm", args.data).split
    assert split is not None, "DiffMM folders ship their split"
    evaluator = evaluator_for(split.test, split.train, split.valid)
    models: dict[str, Recommender] = {
        "MostPop": MostPop().fit(split.train),
        f"LightGCN {args.dim}-d (random embeddings)": random_lightgcn(
            split.n_users, split.n_items, args.dim, seed=0
        ),
    }
    load_before = os.getloadavg()
    rows = []
    for name, model in models.items():
        times = time_it(evaluator, model, args.repeats)
        rows.append({"model": name, "median_s": statistics.median(times), "runs_s": times})
    base = rows[0]["median_s"]
    print(f"users {len(evaluator.users)} x items {split.n_items}, {args.threads} threads")
    print("| model | median s | runs s | x MostPop | < 10 s |\n|---|---|---|---|---|")
    for row in rows:
        row["ratio_to_mostpop"] = row["median_s"] / base
        row["under_limit"] = row["median_s"] < LIMIT_SECONDS
        runs = ", ".join(f"{t:.2f}" for t in row["runs_s"])
        print(
            f"| {row['model']} | {row['median_s']:.2f} | {runs} | {row['ratio_to_mostpop']:.2f} "
            f"| {row['under_limit']} |"
        )
    write_json_atomic(
        args.out,
        {
            "command": " ".join(["python", "bench/eval_speed.py", *(sys.argv[1:] if argv is None else argv)]),
            "users": len(evaluator.users),
            "items": split.n_items,
            "threads": args.threads,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "repeats": args.repeats,
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "rows": rows,
            "users_per_second": {r["model"]: len(evaluator.users) / r["median_s"] for r in rows},
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
