"""LLM user profiles as a user-side feature (issue 11 point 4), measured on movielens-small.

The split is docs/results.md's movielens temporal split (each user's latest 20% of ratings are
validation + test); since every movielens user keeps at least 16 training ratings there, a fixed
random 20% of users (seed 0) keep only their latest 5 training ratings, the rest of their training
history dropped, so the split has users with <= 5 training interactions whose validation and test
items are untouched. Profiles are written from this training split only.

Rows: LightGCN without profiles (docs/results.md's temporal parameters), and `lightgcn-profile`
(the same LightGCN plus an RLMRec-like contrastive alignment of each user's embedding with its
profile vector) on: random unit vectors (a control: what the alignment term does with no profile
content), template profiles (`--llm none` runs only these: the profile idea without a language
model) and SmolLM2 profiles, each embedded by MiniLM, the item text encoder. The alignment weight
is chosen on validation Recall@20 (seed 0), then 3 seeds; test Recall@20 / NDCG@20 overall and for
the users with <= 5 training interactions; one-sided paired tests over users.

    python bench/llm_profiles.py --generate-only     # the LLM profiles into .cache/llm (slow, once)
    python bench/llm_profiles.py                     # writes bench/results/llm_profiles.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Dataset, Split
from crossrec.data.splits import make_split
from crossrec.encoders.modalities import build_encoder, parse_config
from crossrec.eval.ranking import RankingResult, evaluator_for
from crossrec.eval.stats import mean_std, paired_test
from crossrec.io import write_json_atomic
from crossrec.llm.base import LLM, GenerationCache, Request
from crossrec.llm.profiles import Profiles, build_profiles
from crossrec.models import build_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
CACHE = ROOT / ".cache" / "llm" / "profiles.sqlite"
ROW_STORE = ROOT / ".cache" / "llm" / "rows"
GENERATION_LOG = ROOT / ".cache" / "llm" / "profiles_generation.jsonl"
SPARSE_FRACTION, SPARSE_KEEP, SPARSE_SEED = 0.2, 5, 0
SEEDS = (0, 1, 2)
WEIGHT_GRID = (0.02, 0.05, 0.1)  # align_weight (single-seed validation checks: 0.2 and 1.0 are worse)
# docs/results.md's LightGCN on the movielens temporal split (configs/movielens_warm_cold.yaml).
LIGHTGCN = {
    "embedding_dim": 64,
    "n_layers": 2,
    "lr": 0.005,
    "reg_weight": 1e-4,
    "batch_size": 2048,
    "epochs": 200,
    "patience": 4,
    "eval_every": 2,
}
METRICS = ("recall@20", "ndcg@20")


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


class CachedOnly(LLM):
    """SmolLM2's cache entries without the model: a profile not generated yet gets the template."""

    def __init__(self) -> None:
        from crossrec.encoders.registry import resolve
        from crossrec.llm.backends import SMOLLM2

        self.name = f"llama.cpp:{resolve(SMOLLM2.name).weights.name}"  # LlamaCppBackend's name

    def complete(self, request: Request) -> str:
        raise RuntimeError("not generated before the deadline (--cached-only)")


def make_profiles(
    dataset: Dataset,
    split: Split,
    llm_name: str,
    threads: int = 1,
    cached_only: bool = False,
    users: np.ndarray | None = None,
) -> Profiles:
    """Every user's profile: SmolLM2 through the durable cache, or the template alone (`none`)."""
    llm: LLM | None = None
    if llm_name == "smollm2" and cached_only:
        llm = CachedOnly()
    elif llm_name == "smollm2":
        from crossrec.llm.backends import LlamaCppBackend

        llm = LlamaCppBackend(threads=threads)
    done = {"n": 0, "t": time.perf_counter(), "last": time.perf_counter()}

    def progress(user: int, total: int, source: str) -> None:
        now = time.perf_counter()
        if source == "llm":
            # Each fresh generation is logged as it finishes, so a later run from the cache (or an
            # interrupted one) still reports what generation cost.
            GENERATION_LOG.parent.mkdir(parents=True, exist_ok=True)
            with open(GENERATION_LOG, "a") as fh:
                entry = {"backend": llm.name if llm else None, "profiles": 1, "seconds": now - done["last"]}
                fh.write(json.dumps({**entry, "load_avg": os.getloadavg()[0]}) + "\n")
        done["n"] += 1
        done["last"] = now
        if done["n"] % 20 == 0:
            rate = (now - done["t"]) / done["n"]
            print(f"profiles {done['n']}/{total} ({source}, {rate:.2f} s each)", file=sys.stderr, flush=True)

    cache = GenerationCache(CACHE)
    return build_profiles(split.train, dataset.content, llm, cache, users=users, progress=progress)


def wait_for(pid: int, console: Console) -> None:
    """Let a running `--generate-only` process finish filling the cache instead of racing it."""
    console.print(f"waiting for process {pid} (the profile generation) to finish")
    while Path(f"/proc/{pid}").exists():
        time.sleep(10)


def generation_cost() -> dict[str, float]:
    """What the logged fresh generations cost, over every run that wrote to the cache."""
    if not GENERATION_LOG.exists():
        return {"profiles": 0, "seconds": 0.0, "seconds_per_profile": float("nan")}
    rows = [json.loads(line) for line in GENERATION_LOG.read_text().splitlines() if line.strip()]
    n, seconds = sum(r["profiles"] for r in rows), sum(r["seconds"] for r in rows)
    return {"profiles": n, "seconds": seconds, "seconds_per_profile": seconds / max(1, n)}


def embed(texts: list[str]) -> np.ndarray:
    """The profile texts through crossrec's item text encoder (all-MiniLM-L6-v2)."""
    encoder = build_encoder("text", parse_config({"text": {"model": "all-MiniLM-L6-v2"}}).text)
    return np.concatenate([encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])


def fit(split: Split, valid, seed: int, features: np.ndarray | None, weight: float | None):  # type: ignore[no-untyped-def]
    if features is None:
        return build_model("lightgcn", seed=seed, **LIGHTGCN).fit(split.train, valid=valid)
    params = {"profile_weight": 0.0, "align_weight": weight, **LIGHTGCN}
    model = build_model("lightgcn-profile", seed=seed, **params)
    return model.fit(split.train, valid=valid, user_features=features)


def group_means(result: RankingResult, mask: np.ndarray) -> dict[str, float]:
    """Mean per-user metrics over the test users in `mask` (indexed by user)."""
    keep = mask[result.users]
    return {m: float(result.per_user[m][keep].mean()) for m in METRICS}


def run_row(label, split, sparse, features, console):  # type: ignore[no-untyped-def]
    """Weight on validation (seed 0), then every seed's test metrics, overall and for sparse users."""
    valid = evaluator_for(split.valid, split.train, monitor="recall@20")
    test = evaluator_for(split.test, split.train, split.valid)
    grid: dict[str, float] = {}
    first = None
    weights = (None,) if features is None else WEIGHT_GRID
    for weight in weights:
        start = time.perf_counter()
        model = fit(split, valid, SEEDS[0], features, weight)
        score = valid.evaluate(model).metrics["recall@20"]
        grid[str(weight)] = score
        console.print(
            f"{label} weight {weight}: valid R@20 {score:.4f} ({time.perf_counter() - start:.0f} s)"
        )
        if first is None or score > first[1]:
            first = (weight, score, model)
    assert first is not None
    chosen, valid_score, model = first
    seeds, per_user = [], {m: [] for m in METRICS}
    for seed in SEEDS:
        if seed != SEEDS[0]:
            model = fit(split, valid, seed, features, chosen)
        result = test.evaluate(model)  # the test split, read once per seed
        row = {"seed": seed, "best_epoch": model.best_epoch}
        row.update({f"all_{m}": result.metrics[m] for m in METRICS})
        row.update({f"sparse_{m}": v for m, v in group_means(result, sparse).items()})
        row.update({f"rest_{m}": v for m, v in group_means(result, ~sparse).items()})
        seeds.append(row)
        for m in METRICS:
            per_user[m].append(result.per_user[m])
        console.print(label, row)
    users = result.users
    return {
        "label": label,
        "align_weight": chosen,
        "valid_recall@20_by_weight": grid,
        "valid_recall@20": valid_score,
        "seeds": seeds,
        "summary": mean_std(
            [{k: v for k, v in r.items() if k != "seed" and k != "best_epoch"} for r in seeds]
        ),
        "_per_user": {m: np.mean(per_user[m], axis=0) for m in METRICS},
        "_users": users,
    }


def stored_row(label, split, sparse, features, console):  # type: ignore[no-untyped-def]
    """`run_row`, kept under .cache/llm/rows by everything that shapes it (settings, split, feature
    bytes), so a rerun after an interruption reuses finished rows instead of reading test again."""
    key = hashlib.sha256(
        json.dumps([label, LIGHTGCN, WEIGHT_GRID, SEEDS, split.summary(), SPARSE_SEED]).encode()
        + (b"" if features is None else features.tobytes())
    ).hexdigest()[:16]
    path = ROW_STORE / f"{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            row = json.loads(str(z["row"]))
            row["_per_user"] = {m: z[f"per_user_{m}"] for m in METRICS}
            row["_users"] = z["users"]
        row["reused_from"] = path.name  # computed (its test read) by an earlier, interrupted run
        console.print(f"{label}: reused the finished row {path.name}")
        return row
    row = run_row(label, split, sparse, features, console)
    ROW_STORE.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in row.items() if not k.startswith("_")}
    arrays = {f"per_user_{m}": row["_per_user"][m] for m in METRICS}
    np.savez(path, row=np.array(json.dumps(public)), users=row["_users"], **arrays)
    return row


def paired(rows: dict, better: str, worse: str, sparse: np.ndarray) -> list[dict]:
    """One-sided paired tests over test users (each user's value averaged over seeds)."""
    a, b = rows[better], rows[worse]
    assert np.array_equal(a["_users"], b["_users"])
    out = []
    for group, mask in (("all", np.ones_like(sparse)), ("sparse", sparse)):
        keep = mask[a["_users"]]
        for m in METRICS:
            test = paired_test(m, better, a["_per_user"][m][keep], worse, b["_per_user"][m][keep])
            out.append({"group": group, **test.to_dict()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--llm",
        choices=("smollm2", "none"),
        default="smollm2",
        help="none: template profiles only (no language model row)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--wait-pid",
        type=int,
        help="before the LLM's profiles, wait for this process (a --generate-only run)",
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="LLM profiles from the cache only; the template for the rest",
    )
    parser.add_argument("--generate-only", action="store_true", help="write the LLM profiles, then stop")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "llm_profiles.json")
    args = parser.parse_args()
    from machine import machine_facts

    torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    console = Console(width=150)
    dataset = load_dataset("movielens", args.data)
    split, chosen = sparse_user_split(dataset)
    if args.generate_only:  # the sparse users first: their rows matter most if time runs out
        make_profiles(dataset, split, "smollm2", users=chosen)
        profiles = make_profiles(dataset, split, "smollm2")
        console.print(profiles.counts(), f"{sum(profiles.seconds):.0f} s")
        return
    sparse = np.zeros(split.n_users, dtype=bool)
    sparse[chosen] = True
    n_train = np.bincount(split.train.user, minlength=split.n_users)
    assert (n_train[sparse] <= SPARSE_KEEP).all() and (n_train[~sparse] > SPARSE_KEEP).all()

    names = ["template"] + ([args.llm] if args.llm != "none" else [])
    rows: dict[str, dict] = {}
    rows["lightgcn"] = stored_row("lightgcn", split, sparse, None, console)
    noise = np.random.default_rng(0).normal(size=(split.n_users, 384)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    rows["lightgcn + random vectors"] = stored_row("lightgcn + random vectors", split, sparse, noise, console)
    profile_info = {}
    for name in names:
        if name != "template" and args.wait_pid:
            wait_for(args.wait_pid, console)
        profiles = make_profiles(dataset, split, name, cached_only=args.cached_only)
        start = time.perf_counter()
        features = embed(profiles.texts)
        label = f"lightgcn + {name} profiles"
        profile_info[name] = {
            "counts": profiles.counts(),
            "share_llm": profiles.share("llm") + profiles.share("cache"),
            "share_template": profiles.share("template"),
            "template_reasons": sorted({r for r in profiles.reasons.values()}),
            "seconds_this_run": sum(profiles.seconds),
            "embed_seconds": time.perf_counter() - start,
            "examples": {int(u): profiles.texts[u] for u in (*chosen[:3], *np.flatnonzero(~sparse)[:2])},
        }
        rows[label] = stored_row(label, split, sparse, features, console)
    if "smollm2" in names:
        profile_info["smollm2"]["generation"] = generation_cost()

    tests = []
    labels = list(rows)
    for label in labels[1:]:
        tests += paired(rows, label, "lightgcn", sparse)
    for label in labels[2:]:
        tests += paired(rows, label, "lightgcn + random vectors", sparse)
    if len(labels) == 4:
        tests += paired(rows, labels[3], labels[2], sparse)

    table = Table(
        title=f"LightGCN with and without user profiles (movielens temporal, {sparse.sum()} users cut to "
        f"{SPARSE_KEEP} training ratings; test, {len(SEEDS)} seeds)"
    )
    for col in ("model", "align w", "valid R@20", "R@20 all", "N@20 all", "R@20 <=5", "N@20 <=5"):
        table.add_column(col)
    for label, row in rows.items():
        s = row["summary"]
        cells = [
            f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}"
            for k in ("all_recall@20", "all_ndcg@20", "sparse_recall@20", "sparse_ndcg@20")
        ]
        weight = "-" if row["align_weight"] is None else f"{row['align_weight']:g}"
        table.add_row(label, weight, f"{row['valid_recall@20']:.4f}", *cells)
    console.print(table)
    table = Table(title="paired one-sided tests over test users (per-user mean over seeds)")
    for col in ("better?", "than", "group", "metric", "mean diff", "t p", "Wilcoxon p"):
        table.add_column(col)
    for t in tests:
        table.add_row(
            t["better"],
            t["worse"],
            t["group"],
            t["metric"],
            f"{t['mean_difference']:+.4f}",
            f"{t['p_value_t']:.3g}",
            f"{t['p_value_wilcoxon']:.3g}",
        )
    console.print(table)
    command = " ".join(["python bench/llm_profiles.py", *sys.argv[1:]])
    write_json_atomic(
        args.out,
        {
            "command": command,
            "machine": machine_facts(load_before),
            "wall_seconds": time.time() - started,
            "split": {
                **split.summary(),
                "sparse_users": int(sparse.sum()),
                "sparse_keep": SPARSE_KEEP,
                "sparse_seed": SPARSE_SEED,
                "test_users": len(rows["lightgcn"]["_users"]),
            },
            "model_params": LIGHTGCN,
            "weight_grid": WEIGHT_GRID,
            "seeds": SEEDS,
            "profiles": profile_info,
            "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows.values()],
            "paired_tests": tests,
        },
    )


if __name__ == "__main__":
    main()
