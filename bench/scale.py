"""How each stage's cost grows with the catalogue and the user base, on this one machine: synthetic
power-law interactions (users = items = 10k, 100k, 1M; 20 interactions per user on average) and
clustered 64-d item vectors.

Every cell (stage x size) runs in a fresh process, so its peak RSS is its own. Stages:

- encode: crossrec's encode path (hashing, batching, the on-disk cache) on synthetic titles, with
  WordLlama at every size and MiniLM on 1k and 4k texts (per-item cost, measured);
- lightgcn / freedom: the model's own construction (the user-item graph; FREEDOM's item kNN
  graph, exact below 50k items and from an IVF index above) and timed Adam steps; an epoch is
  steps x seconds per step (at 10k a real one-epoch `fit` is timed beside the projection), at a
  fixed batch of 4096 pairs and with the batch grown to give 64 steps per epoch;
- evaluate / top-k: full ranking (every item scored, train items masked, top 20) of a sample of
  users with the shrinking scoring batch; the all-users time is users x seconds per user (measured
  whole at 10k);
- serve: the serving index (exact below 20k items, HNSW above) built and queried for top 20; at 1M
  the IVF-PQ index of bench/ann_large.py (its JSON, not rerun).

    python bench/scale.py                  # writes bench/results/scale.json and docs/scale.png
    python bench/scale.py --sizes 10000    # one size
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PER_USER = 20
DIM = 64
TIMED_STEPS = 4
FIXED_STEPS = 64  # steps per epoch of the grown-batch variant (steps_per_epoch)
ANN_EF_SEARCH = (128, 256, 512, 1024)  # the batch top-k's HNSW search depths (serving's default: 128)
EVAL_SAMPLE = 10_000  # users in the sampled full evaluation (eval.max_users)


# -- synthetic data ------------------------------------------------------------------------------
def interactions(n_users: int, n_items: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Power-law item popularity (Zipf-like, exponent 0.9) and log-normal user activity (mean
    PER_USER, at least 2), duplicates removed; one random interaction per user held out as test."""
    from crossrec.data.schema import Interactions

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = rng.permutation(weights / weights.sum())
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.clip(np.round(activity * PER_USER / activity.mean()), 2, n_items // 2).astype(np.int64)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=len(users), p=popularity)
    keys = np.unique(users * n_items + items)
    users, items = keys // n_items, keys % n_items
    starts = np.searchsorted(users, np.arange(n_users))
    counts = np.diff(np.append(starts, len(users)))
    has = counts >= 2
    held = starts[has] + (rng.random(has.sum()) * counts[has]).astype(np.int64)
    test = np.zeros(len(users), dtype=bool)
    test[held] = True

    def part(mask: np.ndarray) -> Interactions:
        return Interactions(users[mask], items[mask], np.ones(mask.sum()), n_users, n_items)

    return part(~test), part(test)


def item_vectors(n_items: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (so a kNN graph has structure), in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, DIM)).astype(np.float32)
    out = np.empty((n_items, DIM), dtype=np.float32)
    for lo in range(0, n_items, 100_000):
        n = min(100_000, n_items - lo)
        block = centres[rng.integers(0, 256, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
        out[lo : lo + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# -- the cells ------------------------------------------------------------------------------------
def cell_encode(size: int, model: str) -> dict[str, Any]:
    from crossrec.data.schema import Dataset, Interactions, ItemContent
    from crossrec.encoders.build import encode_dataset
    from crossrec.encoders.modalities import TextEncoderConfig, build_encoder

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    picks = words[rng.integers(0, len(words), (size, 6))]
    titles = [f"item {i}: " + " ".join(row) for i, row in enumerate(picks)]
    empty = Interactions(np.zeros(0), np.zeros(0), np.zeros(0), 1, size)
    dataset = Dataset(
        "scale", np.array(["u"]), np.arange(size).astype(str), empty, ItemContent(text={"title": titles})
    )
    text = TextEncoderConfig(model=model, batch_size=256 if "wordllama" in model else 64)
    config = {"text": text, "image": None, "audio": None}
    start = time.perf_counter()
    encoder = build_encoder("text", text)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        result = encode_dataset(dataset, config, cache, encoders={"text": encoder}, threads=2, progress=False)
        seconds = time.perf_counter() - start
    encoded = int(result.present["text"].sum())
    return {"seconds": seconds, "load_s": load_s, "items": encoded, "us_per_item": 1e6 * seconds / size}


def _timed_steps(model, train) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Median seconds of an Adam step (after one warm-up), and steps per epoch."""
    steps = TIMED_STEPS if train.n_items < 1_000_000 else 2  # a 1M step takes seconds: two suffice
    import torch

    from crossrec.models.sampling import NegativeSampler

    rng = np.random.default_rng(0)
    sampler = NegativeSampler(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
    times = []
    for step in range(steps + 1):
        pick = rng.integers(0, len(train), model.batch_size)
        users, pos = torch.from_numpy(train.user[pick]), torch.from_numpy(train.item[pick])
        neg = torch.from_numpy(sampler.sample(np.repeat(train.user[pick], model.n_negatives), rng))
        neg = neg.reshape(len(pick), model.n_negatives)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.batch_loss(users, pos, neg, None).backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return float(np.median(times)), math.ceil(len(train) / model.batch_size)


def cell_train(size: int, name: str) -> dict[str, Any]:
    import torch

    from crossrec.models import build_model
    from crossrec.models.graph import EXACT_KNN_BELOW

    torch.set_num_threads(2)
    train, _ = interactions(size, size)
    out: dict[str, Any] = {"interactions": len(train)}
    params: dict[str, Any] = {"embedding_dim": DIM, "n_layers": 2, "batch_size": 4096, "seed": 0, "epochs": 1}
    features = None
    if name == "freedom":
        features = {"text": item_vectors(size)}
        params.update(knn_k=10, edge_keep=1.0, modalities=["text"])
        out["knn_graph"] = "exact" if size < EXACT_KNN_BELOW else "ivf"
    from crossrec.models.training import epoch_batch_size

    model = build_model(name, **params)
    start = time.perf_counter()
    model._construct(train, _features(features))  # the model's own graphs and tables
    out["build_s"] = time.perf_counter() - start
    out["step_s"], out["steps_per_epoch"] = _timed_steps(model, train)
    out["epoch_s"] = out["step_s"] * out["steps_per_epoch"]
    # Each step propagates the whole graph, so at a fixed batch an epoch grows as n^2; with the
    # batch grown with the data (steps_per_epoch: a fixed number of steps per epoch) it grows as n.
    model.steps_per_epoch = FIXED_STEPS
    model.batch_size = epoch_batch_size(model, len(train))  # the batch _timed_steps draws
    out["big_batch"] = model.batch_size
    out["big_batch_step_s"], _ = _timed_steps(model, train)
    out["big_batch_epoch_s"] = out["big_batch_step_s"] * FIXED_STEPS
    if size <= 10_000:  # a real epoch, to check the projection
        start = time.perf_counter()
        build_model(name, **params).fit(train, features)
        out["fit_one_epoch_s"] = time.perf_counter() - start
    return out


def _features(features: dict[str, np.ndarray] | None):  # type: ignore[no-untyped-def]
    from crossrec.data.features import as_feature_set

    return as_feature_set(features)


def cell_rank(size: int, what: str) -> dict[str, Any]:
    import torch

    from crossrec.eval.ranking import evaluator_for
    from crossrec.eval.sharded import batch_top_k
    from crossrec.models import build_model

    torch.set_num_threads(2)
    train, test = interactions(size, size)
    model = build_model("lightgcn", embedding_dim=DIM, n_layers=2, seed=0)
    model._construct(train, _features(None))
    model.score(np.arange(1))  # propagate once (cached), as after training
    evaluator = evaluator_for(test, train)
    users = evaluator.users
    sample = (
        users
        if size <= 10_000
        else np.random.default_rng(0).choice(users, 2000 if size <= 100_000 else 400, replace=False)
    )
    sample = np.sort(sample)
    start = time.perf_counter()
    if what == "evaluate":
        evaluator.combine([evaluator.evaluate_users(model, sample)])
    else:
        batch_top_k(model, sample, 20, train.to_csr())
    seconds = time.perf_counter() - start
    per_user = seconds / len(sample)
    extra = {}
    if what == "evaluate":  # eval.max_users: the whole evaluation of a 10k-user sample, timed
        sampled = evaluator_for(test, train, max_users=EVAL_SAMPLE)
        start = time.perf_counter()
        sampled.evaluate(model)
        extra = {"sample_users": len(sampled.users), "sample_s": time.perf_counter() - start}
    return {
        **extra,
        "users_timed": len(sample),
        "users": len(users),
        "batch": evaluator.batch_size,
        "ms_per_user": 1000 * per_user,
        "all_users_s": per_user * len(users),
        "projected": len(sample) < len(users),
    }


def cell_top_k_ann(size: int) -> dict[str, Any]:
    """Batch top-20 for every user through the serving index (HNSW above 20k items), each user's
    training items excluded, against exact full ranking on a sample. Item vectors are the clustered
    unit vectors and a user's vector is the mean of its training items' (what propagation makes of a
    trained model's); with unit items, inner-product order is L2 order, so the "ip" graph is built."""
    import scipy.sparse as sp

    from crossrec.serve.index import VectorIndex

    train, _ = interactions(size, size)
    items = item_vectors(size)
    history = train.to_csr(binary=True)
    degree = np.maximum(np.asarray(history.sum(axis=1)).ravel(), 1)
    users_v = (sp.diags(1.0 / degree) @ history @ items).astype(np.float32)
    sample = np.sort(np.random.default_rng(0).choice(size, min(size, 2000), replace=False))
    exact = []
    for lo in range(0, len(sample), 200):
        rows = sample[lo : lo + 200]
        scores = users_v[rows] @ items.T
        block = history[rows]
        scores[np.repeat(np.arange(len(rows)), np.diff(block.indptr)), block.indices] = -np.inf
        exact.append(np.argpartition(-scores, 20, axis=1)[:, :20].copy())  # not a view of the block
    truth = np.concatenate(exact)
    index = VectorIndex(DIM, graph="ip")
    start = time.perf_counter()
    index.add(np.arange(size), items)
    build_s = time.perf_counter() - start
    exclude = [history.indices[history.indptr[u] : history.indptr[u + 1]] for u in sample]
    depths = []
    for ef in ANN_EF_SEARCH if index.kind == "hnsw" else (None,):
        if ef is not None:
            index.ef_search = ef
        start = time.perf_counter()
        found = np.concatenate(
            [
                index.search(users_v[sample[lo : lo + 256]], 20, exclude=exclude[lo : lo + 256])[0]
                for lo in range(0, len(sample), 256)  # batches of users: the search's memory stays bounded
            ]
        )
        per_user = (time.perf_counter() - start) / len(sample)
        recall = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(found, truth, strict=True)]))
        depths.append({"ef_search": ef, "ms_per_user": 1000 * per_user, "recall@20_vs_exact": recall})
    # The headline: the shallowest search that reaches Recall@20 0.95, else the deepest tried.
    chosen = next((d for d in depths if d["recall@20_vs_exact"] >= 0.95), depths[-1])
    return {
        "index": index.kind,
        "build_s": build_s,
        "users_timed": len(sample),
        **chosen,
        "all_users_s": build_s + chosen["ms_per_user"] / 1000 * size,
        "projected": len(sample) < size,
        "depths": depths,
    }


def cell_serve(size: int) -> dict[str, Any]:
    from crossrec.serve.index import VectorIndex

    vectors = item_vectors(size)
    queries = item_vectors(400, seed=1)
    index = VectorIndex(DIM)
    start = time.perf_counter()
    index.set_probe(queries[:200])
    index.add(np.arange(size), vectors)
    build_s = time.perf_counter() - start
    times = []
    for q in queries[200:]:
        t = time.perf_counter()
        index.search(q[None], 20)
        times.append(time.perf_counter() - t)
    exact = np.argsort(-(queries[200:] @ vectors.T), axis=1)[:, :20]
    found, _ = index.search(queries[200:], 20)
    recall = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(found, exact, strict=True)]))
    return {
        "index": index.kind,
        "build_s": build_s,
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p95_ms": 1000 * float(np.percentile(times, 95)),
        "recall@20_vs_exact": recall,
    }


def cell_baseline(size: int) -> dict[str, Any]:
    """The interpreter with numpy, torch and crossrec imported: what every cell's RSS starts from."""
    import torch  # noqa: F401

    import crossrec.models  # noqa: F401

    return {}


# -- running the cells in their own processes ---------------------------------------------------
def _child(target: Callable[..., dict[str, Any]], args: tuple, queue: mp.Queue) -> None:
    try:
        result = target(*args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put(result)
    except Exception as exc:  # reported, so one failing cell does not hide the others
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_cell(target: Callable[..., dict[str, Any]], *args: Any, timeout_s: float = 1800) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    start = time.perf_counter()
    proc.start()
    try:
        result = queue.get(timeout=timeout_s)
    except Exception:
        result = {"error": f"no result within {timeout_s:.0f} s"}
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--minilm", nargs="*", type=int, default=[1000, 4000], help="MiniLM encode sizes")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.png")
    parser.add_argument(
        "--stages", nargs="+", help="run only these stages (e.g. 'top-k ANN') and replace their rows in --out"
    )
    args = parser.parse_args()

    from machine import machine_facts
    from rich.console import Console
    from rich.table import Table

    from crossrec.io import write_json_atomic

    console = Console()
    load = os.getloadavg()
    rows: list[dict[str, Any]] = [{"stage": "baseline", "size": 0, **run_cell(cell_baseline, 0)}]
    plan: list[tuple[str, Callable[..., dict[str, Any]], tuple]] = []
    for n in args.minilm:
        plan.append(("encode MiniLM", cell_encode, (n, "all-MiniLM-L6-v2")))
    for size in args.sizes:
        plan += [
            ("encode WordLlama", cell_encode, (size, "wordllama-l2-supercat-256")),
            ("lightgcn", cell_train, (size, "lightgcn")),
            ("freedom", cell_train, (size, "freedom")),
            ("evaluate", cell_rank, (size, "evaluate")),
            ("top-k", cell_rank, (size, "top-k")),
            ("top-k ANN", cell_top_k_ann, (size,)),
        ]
        if size < 1_000_000:
            plan.append(("serve", cell_serve, (size,)))
    previous: dict[str, Any] = {}
    if args.stages:
        plan = [cell for cell in plan if cell[0] in args.stages]
        previous = json.loads(args.out.read_text())
        redone = {(stage, cell_args[0]) for stage, _, cell_args in plan}
        rows = [r for r in previous["rows"] if (r["stage"], r["size"]) not in redone and "from" not in r]
    for stage, target, cell_args in plan:
        result = run_cell(target, *cell_args)
        rows.append({"stage": stage, "size": cell_args[0], **result})
        console.print(
            stage, cell_args[0], {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        )
    large = ROOT / "bench" / "results" / "ann_large.json"
    if large.is_file():
        ann = json.loads(large.read_text())
        rows.append(
            {
                "stage": "serve",
                "size": ann.get("items", 1_000_000),
                "from": "bench/ann_large.py",
                **_ann_row(ann),
            }
        )

    table = Table(title="cost by size (this machine)")
    for column in ("stage", "size", "time", "peak RSS MiB"):
        table.add_column(column)
    for row in rows[1:]:
        table.add_row(
            row["stage"], f"{row['size']:,}", _headline(row), f"{row.get('peak_rss_mib', float('nan')):.0f}"
        )
    console.print(table)
    results = {
        "command": "python bench/scale.py",
        # each --stages run is listed: which cells were measured again, and the machine's load then
        "reruns": previous.get("reruns", [])
        + (
            [{"stages": args.stages, "sizes": args.sizes, "machine": machine_facts(load)}]
            if args.stages
            else []
        ),
        "per_user_interactions": PER_USER,
        "dim": DIM,
        "rows": rows,
        "machine": previous.get("machine") or machine_facts(load),
    }
    write_json_atomic(args.out, results)
    plot(rows, args.plot)
    console.print(f"wrote {args.out} and {args.plot}")


def _ann_row(ann: dict[str, Any]) -> dict[str, Any]:
    """The default depth's row (nprobe 64, rerank 500) of bench/ann_large.py's results."""
    best = next(d for d in ann["depths"] if d["nprobe"] == 64)
    return {
        "index": "ivf-pq",
        "build_s": ann["build_s"],
        "p50_ms": best["p50_ms_single"],
        "p95_ms": best["p95_ms_single"],
        "recall@20_vs_exact": best["recall@20"],
        "peak_rss_mib": ann["peak_rss_bytes"] / 2**20,
    }


def _headline(row: dict[str, Any]) -> str:
    if "error" in row:
        return row["error"]
    stage = row["stage"]
    if stage.startswith("encode"):
        return f"{row['us_per_item']:.0f} us/item ({row['seconds']:.1f} s)"
    if stage in ("lightgcn", "freedom"):
        extra = f", graphs built in {row['build_s']:.1f} s" + (
            f" ({row['knn_graph']} kNN)" if "knn_graph" in row else ""
        )
        fit = f", 1-epoch fit {row['fit_one_epoch_s']:.1f} s" if "fit_one_epoch_s" in row else ""
        big = f"; batch {row['big_batch']:,}: epoch {row['big_batch_epoch_s']:.1f} s*"
        return (
            f"epoch {row['epoch_s']:.1f} s* ({row['step_s']:.3f} s/step x {row['steps_per_epoch']})"
            f"{extra}{fit}{big}"
        )
    if stage in ("evaluate", "top-k"):
        star = "*" if row["projected"] else ""
        per_user = f"{row['ms_per_user']:.3f} ms/user, batch {row['batch']}"
        sampled = f"; {row['sample_users']:,} users: {row['sample_s']:.1f} s" if "sample_s" in row else ""
        return f"all users {row['all_users_s']:.1f} s{star} ({per_user}){sampled}"
    if stage == "top-k ANN":
        star = "*" if row["projected"] else ""
        return (
            f"all users {row['all_users_s']:.1f} s{star} ({row['index']} built in {row['build_s']:.1f} s, "
            f"{row['ms_per_user']:.3f} ms/user, R@20 {row['recall@20_vs_exact']:.3f}"
            + (f" at ef_search {row['ef_search']})" if row.get("ef_search") else ")")
        )
    if stage == "serve":
        latency = f"p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms"
        return f"{row['index']}: {latency}, R@20 {row['recall@20_vs_exact']:.3f}"
    return ""


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Seconds and peak RSS against size, log-log, one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        "encode WordLlama (s)": ("encode WordLlama", "seconds"),
        "LightGCN epoch, batch 4096 (s)": ("lightgcn", "epoch_s"),
        "LightGCN epoch, 64 steps (s)": ("lightgcn", "big_batch_epoch_s"),
        "FREEDOM epoch, batch 4096 (s)": ("freedom", "epoch_s"),
        "FREEDOM epoch, 64 steps (s)": ("freedom", "big_batch_epoch_s"),
        "FREEDOM graphs built (s)": ("freedom", "build_s"),
        "full evaluation (s)": ("evaluate", "all_users_s"),
        "batch top-20 (s)": ("top-k", "all_users_s"),
        "batch top-20, HNSW index (s)": ("top-k ANN", "all_users_s"),
        "full evaluation, 10k-user sample (s)": ("evaluate", "sample_s"),
    }
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, (stage, key) in series.items():
        points = sorted(
            (r["size"], r[key], r.get("peak_rss_mib")) for r in rows if r["stage"] == stage and key in r
        )
        if not points:
            continue
        x = [p[0] for p in points]
        ax_t.plot(x, [p[1] for p in points], marker="o", label=label)
        if key in ("seconds", "epoch_s", "all_users_s") and stage != "top-k":
            ax_m.plot(x, [p[2] / 1024 for p in points], marker="o", label=stage)
    sizes = sorted({r["size"] for r in rows if r["stage"] == "lightgcn"})
    if sizes:
        ax_t.plot(sizes, [sizes[0] and 10 * s / sizes[0] for s in sizes], "k:", label="linear (reference)")
    for ax, title, unit in ((ax_t, "time", "seconds"), (ax_m, "peak memory", "GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users = items")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.axhline(24, color="r", linestyle="--", label="this machine (24 GiB)")
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
