"""A million-item catalogue in the IVF-PQ index (`serve/large_index.py`): bytes per item, build time
and peak memory, Recall@20 against exact search and query latency, at a few search depths.

The vectors are synthetic (clustered directions, log-normal norms like trained embeddings), written
to a .npy file a chunk at a time; the build and the queries run in a child process, so its peak
resident memory is the index's and one chunk's, not the generator's.

    python bench/ann_large.py                 # 1M x 64; writes bench/results/ann_large.json
    python bench/ann_large.py --items 200000  # smaller
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from machine import machine_facts
from rich.console import Console
from rich.table import Table

from crossrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
DEPTHS = ((32, 200), (64, 500), (128, 1000))  # (nprobe, rerank)


def vectors(n: int, dim: int, seed: int, *, centres: int = 1024) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(12345).normal(size=(centres, dim)).astype(np.float32)
    rows = means[rng.integers(0, centres, size=n)] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows * rng.lognormal(0.0, 0.3, size=(n, 1))).astype(np.float32)


def write_items(path: Path, n: int, dim: int, chunk: int) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        out[start : start + chunk] = vectors(min(chunk, n - start), dim, seed=start + 1)
    out.flush()
    del out


def exact_top(path: Path, queries: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """The exact top k by inner product, a chunk of items at a time (ties to the lower id)."""
    items = np.load(path, mmap_mode="r")
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    best = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(items), chunk):
        scores = queries @ np.ascontiguousarray(items[start : start + chunk]).T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores = np.hstack([best, np.take_along_axis(scores, part, 1)])
        ids = np.hstack([best_ids, part + start])
        order = _order(scores, ids)[:, :k]
        best, best_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    return best_ids


def _order(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.array([np.lexsort((i, -s)) for s, i in zip(scores, ids, strict=True)])


def _peak_rss() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(path: str, queries: np.ndarray, exact: np.ndarray, out: mp.Queue) -> None:
    import faiss

    faiss.omp_set_num_threads(2)
    from crossrec.serve.large_index import LargeIndex, LargeIndexSettings

    baseline = _peak_rss()  # the interpreter and imports
    start = time.perf_counter()
    index = LargeIndex.build(path, LargeIndexSettings())
    build_s = time.perf_counter() - start
    rows = []
    for nprobe, rerank in DEPTHS:
        index._index.nprobe = nprobe
        index.settings = LargeIndexSettings(nprobe=nprobe, rerank=rerank)
        start = time.perf_counter()
        ids, _ = index.search(queries, 20)
        batch_ms = 1000 * (time.perf_counter() - start) / len(queries)
        one = []
        for q in queries[:200]:
            t = time.perf_counter()
            index.search(q[None, :], 20)
            one.append(1000 * (time.perf_counter() - t))
        recall = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ids, exact, strict=True)]))
        rows.append(
            {
                "nprobe": nprobe,
                "rerank": rerank,
                "recall@20": recall,
                "ms_per_query_batched": batch_ms,
                "p50_ms_single": float(np.percentile(one, 50)),
                "p95_ms_single": float(np.percentile(one, 95)),
            }
        )
    peak = _peak_rss()
    out.put(
        {
            "items": len(index),
            "build_s": build_s,
            "index_bytes": index.nbytes,
            "bytes_per_item": index.nbytes / len(index),
            "peak_rss_bytes": peak,
            "peak_rss_above_imports_bytes": peak - baseline,
            "depths": rows,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-scale")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ann_large.json")
    args = parser.parse_args()
    load = os.getloadavg()
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / f"items-{args.items}x{args.dim}.npy"
    if not path.exists():
        write_items(path, args.items, args.dim, chunk=100_000)
    queries = vectors(args.queries, args.dim, seed=10**9)
    start = time.perf_counter()
    exact = exact_top(path, queries, 20, chunk=100_000)
    exact_ms = 1000 * (time.perf_counter() - start) / len(queries)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=child, args=(str(path), queries, exact, out))
    proc.start()
    result = out.get()
    proc.join()
    result.update(
        {
            "dim": args.dim,
            "float_bytes_per_item": 4 * args.dim,
            "exact_ms_per_query_batched": exact_ms,
            "vectors_file_bytes": path.stat().st_size,
        }
    )
    table = Table(title=f"IVF-PQ, {result['items']:,} items x {args.dim}, {args.queries} queries")
    for col in ("nprobe", "rerank", "Recall@20 vs exact", "ms/query (batch)", "p50 ms (one)", "p95 ms (one)"):
        table.add_column(col)
    for r in result["depths"]:
        table.add_row(
            str(r["nprobe"]),
            str(r["rerank"]),
            f"{r['recall@20']:.4f}",
            f"{r['ms_per_query_batched']:.2f}",
            f"{r['p50_ms_single']:.2f}",
            f"{r['p95_ms_single']:.2f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"build {result['build_s']:.1f} s, index {result['bytes_per_item']:.1f} B/item "
        f"(float vectors {4 * args.dim} B/item, on disk), peak RSS of the build and queries "
        f"{result['peak_rss_bytes'] / 2**20:.0f} MiB, "
        f"{result['peak_rss_above_imports_bytes'] / 2**20:.0f} MiB above the imports "
        f"(vectors file {result['vectors_file_bytes'] / 2**20:.0f} MiB); "
        f"exact search {exact_ms:.2f} ms/query (batched, chunked)"
    )
    result["machine"] = machine_facts(load)
    result["command"] = "python bench/ann_large.py"
    write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
