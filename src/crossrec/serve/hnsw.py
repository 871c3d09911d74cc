"""The HNSW graphs behind `serve.index.VectorIndex`, for inner-product search over model vectors.

Two graphs answer the same question: an inner-product graph ("ip"), and an L2 graph over the MIPS ->
L2 reduction ("l2": each item x stored as [x, sqrt(M^2 - |x|^2)] with M the largest norm, each query
as [q, 0], so the nearest in L2 is the largest inner product). Which one finds the true top k better
depends on the catalogue (the spread of the norms above all), so `choose_graph` builds both and keeps
the one with the higher Recall@20 against exact search on a probe of queries. Scores are always the
real inner products, never L2 distances.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import faiss
import numpy as np

Graph = Literal["ip", "l2"]
PROBE_K = 20
PROBE_ITEMS = 256  # items sampled as the probe when none was given
SCORE_CHUNK = 1 << 22  # candidate coordinates whose inner products are computed at once (L2 graph)


class GraphSettings(NamedTuple):
    m: int
    ef_construction: int
    ef_search: int


def max_norm(vectors: np.ndarray) -> float:
    return float(np.linalg.norm(vectors.astype(np.float64), axis=1).max()) if len(vectors) else 0.0


def lift(vectors: np.ndarray, norm: float) -> np.ndarray:
    """The rows the L2 graph stores: [x, sqrt(M^2 - |x|^2)] (0 for a norm above M)."""
    extra = np.sqrt(np.maximum(norm**2 - np.sum(vectors.astype(np.float64) ** 2, axis=1), 0.0))
    return np.hstack([vectors, extra.astype(np.float32)[:, None]])


def _lift_queries(queries: np.ndarray) -> np.ndarray:
    return np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)])


def new_graph(graph: Graph, vectors: np.ndarray, norm: float, settings: GraphSettings) -> faiss.Index:
    dim = vectors.shape[1]
    if graph == "ip":
        index = faiss.IndexHNSWFlat(dim, settings.m, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(dim + 1, settings.m, faiss.METRIC_L2)
    index.hnsw.efConstruction = settings.ef_construction
    index.hnsw.efSearch = settings.ef_search
    index.add(lift(vectors, norm) if graph == "l2" else vectors)
    return index


def choose_graph(
    vectors: np.ndarray, norm: float, settings: GraphSettings, probe: np.ndarray | None
) -> tuple[Graph, faiss.Index, dict[str, float]]:
    """Both graphs over these vectors; the one with the higher Recall@20 against exact search on
    `probe` (default: a seeded sample of the vectors themselves), inner product on a tie, and both
    recalls."""
    if len(vectors) == 0:
        return "ip", new_graph("ip", vectors, norm, settings), {}
    if probe is None:
        rng = np.random.default_rng(0)
        probe = vectors[rng.choice(len(vectors), min(PROBE_ITEMS, len(vectors)), replace=False)]
    k = min(PROBE_K, len(vectors))
    truth = np.concatenate(
        [
            np.argpartition(-(probe[s : s + 64] @ vectors.T), k - 1, axis=1)[:, :k]
            for s in range(0, len(probe), 64)
        ]
    )
    recall: dict[str, float] = {}
    best: tuple[Graph, faiss.Index] | None = None
    for graph in ("ip", "l2"):
        index = new_graph(graph, vectors, norm, settings)
        _, found = index.search(probe if graph == "ip" else _lift_queries(probe), k)
        recall[graph] = float((found[:, :, None] == truth[:, None, :]).any(2).sum() / truth.size)
        if best is None or recall[graph] > recall[best[0]]:
            best = (graph, index)
    assert best is not None
    return best[0], best[1], recall


def search_graph(
    index: faiss.Index, graph: Graph, queries: np.ndarray, f: int, ef_search: int
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's f nearest rows per query as (inner products, graph rows), best first; a missing
    result has row -1 and score -inf."""
    params = faiss.SearchParametersHNSW(efSearch=ef_search)
    if graph == "ip":
        return index.search(queries, f, params=params)
    _, rows = index.search(_lift_queries(queries), f, params=params)
    dim = queries.shape[1]
    scores = np.empty(rows.shape, dtype=np.float32)
    step = max(1, SCORE_CHUNK // (f * (dim + 1)))
    for start in range(0, len(rows), step):  # the real inner products, never L2 distances
        chunk = rows[start : start + step]
        stored = index.reconstruct_batch(np.ascontiguousarray(np.maximum(chunk, 0).ravel()))
        stored = stored[:, :dim].reshape(*chunk.shape, dim)
        scores[start : start + step] = np.einsum("nd,nfd->nf", queries[start : start + step], stored)
    scores[rows < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
