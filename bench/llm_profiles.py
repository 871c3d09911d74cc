"""LLM user profiles as a user-side feature (issue 11 point 4), measured on movielens-small.

The split is docs/results.md's movielens temporal split (each user's latest 20% of ratings are
validation + test); since every movielens user keeps at least 16 training ratings there, a fixed
random 20% of users (seed 0) keep only their latest 5 training ratings, the rest of their training
history dropped, so the split has users with <= 5 training interactions whose validation and test
items are untouched. Profiles are written from this training split only.

Rows: LightGCN without profiles (docs/results.md's temporal parameters), and LightGCN with profile
vectors (MiniLM, the same encoder as the item text) from template profiles (`--llm none`: the
profile idea without a language model) and from SmolLM2 profiles. The profile weight is chosen on
validation Recall@20 (seed 0), then 3 seeds; test Recall@20 / NDCG@20 overall and for the users with
<= 5 training interactions; one-sided paired tests over users against the row without profiles.

    python bench/llm_profiles.py --generate-only     # the LLM profiles into .cache/llm (slow, once)
    python bench/llm_profiles.py                     # writes bench/results/llm_profiles.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Dataset, Split
from crossrec.data.splits import make_split
from crossrec.llm.base import GenerationCache
from crossrec.llm.profiles import Profiles, build_profiles

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
CACHE = ROOT / ".cache" / "llm" / "profiles.sqlite"
SPARSE_FRACTION, SPARSE_KEEP, SPARSE_SEED = 0.2, 5, 0


def sparse_user_split(dataset: Dataset) -> tuple[Split, np.ndarray]:
    """The temporal split with a fixed random share of users cut to their latest training ratings."""
    split = make_split(dataset, "temporal", holdout=0.2)
    rng = np.random.default_rng(SPARSE_SEED)
    chosen = np.sort(rng.choice(dataset.n_users, int(SPARSE_FRACTION * dataset.n_users), replace=False))
    train = split.train
    assert train.timestamp is not None
    order = np.lexsort((-train.timestamp, train.user))  # per user, latest first
    starts = np.searchsorted(train.user[order], np.arange(train.n_users + 1))
    rank = np.empty(len(train), dtype=np.int64)
    rank[order] = np.arange(len(train)) - starts[train.user[order]]
    keep = ~np.isin(train.user, chosen) | (rank < SPARSE_KEEP)
    thinned = Split(train.select(keep), split.valid, split.test, f"{split.name}-sparse{SPARSE_KEEP}")
    return thinned, chosen


def llm_profiles(dataset: Dataset, split: Split, llm_name: str, threads: int = 1) -> Profiles:
    """Every user's profile: SmolLM2 through the durable cache, or the template alone (`none`)."""
    llm = None
    if llm_name == "smollm2":
        from crossrec.llm.backends import LlamaCppBackend

        llm = LlamaCppBackend(threads=threads)
    done = {"n": 0, "t": time.perf_counter()}

    def progress(user: int, total: int, source: str) -> None:
        done["n"] += 1
        if done["n"] % 20 == 0:
            rate = (time.perf_counter() - done["t"]) / done["n"]
            print(f"profiles {done['n']}/{total} ({source}, {rate:.2f} s each)", file=sys.stderr, flush=True)

    return build_profiles(split.train, dataset.content, llm, GenerationCache(CACHE), progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--generate-only", action="store_true", help="write the LLM profiles, then stop")
    args = parser.parse_args()
    dataset = load_dataset("movielens", args.data)
    split, _ = sparse_user_split(dataset)
    if args.generate_only:
        profiles = llm_profiles(dataset, split, "smollm2")
        print(profiles.counts(), f"{profiles.seconds:.0f} s")
        return


if __name__ == "__main__":
    main()
