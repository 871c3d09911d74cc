"""The item-vector index behind recommendations, similar items and search.

Scores are the model's own dot products (vectors are never normalised), so a served ranking is the
offline ranking. Small catalogues are searched exactly (faiss `IndexFlatIP` in `IndexIDMap2`); from
`exact_below` items on, HNSW (`IndexHNSWFlat`). HNSW cannot remove, so a removed or replaced item
leaves a tombstone that queries skip; `rebuild()` compacts them, and an `add` calls it once tombstones
pass `REBUILD_SHARE` of the stored rows.

Which graph suits a catalogue depends on its vectors: inner-product HNSW does well on heavy-tailed
norms and poorly on some trained embeddings, where the MIPS -> L2 reduction (each item x stored as
[x, sqrt(M^2 - |x|^2)] with M the largest norm, each query as [q, 0], searched by L2: the same order)
does well and the other fails. So each HNSW build makes both graphs and keeps the one with the higher
Recall@20 against exact search on a probe of queries (`set_probe`, e.g. a sample of user vectors;
without one, a seeded sample of the items' own vectors). Scores are always the real inner products.
An item added later with a norm above M cannot be lifted: it is stored with a last coordinate of 0,
skipped in graph results and scored exactly by every query instead, until such items pass
`OVERFLOW_SHARE` of the items and an `add` rebuilds (with the new M, choosing the graph again).

Filters and exclusions never cost results: a query oversamples, doubles while fewer than k eligible
items came back, and ends exactly (over the eligible vectors) rather than return short, so -1
padding means fewer than k eligible items exist. A filter that allows under `EXACT_FILTER_SHARE` of
the items is searched exactly from the start: HNSW would have to walk most of the graph to find them.
Ties are broken by the lower id, whatever the insertion order.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Literal

import faiss
import numpy as np

from crossrec.serve.hnsw import Graph, GraphSettings, choose_graph, lift, max_norm, new_graph, search_graph

REBUILD_SHARE = 0.2
EXACT_FILTER_SHARE = 0.05
OVERFLOW_SHARE = 0.01

Allowed = np.ndarray | Set[int] | None


def _grown(array: np.ndarray, size: int, fill: int | bool) -> np.ndarray:
    """`array` with room for at least `size` entries (capacity doubles, so appends stay amortised O(1))."""
    if len(array) >= size:
        return array
    out = np.full(max(size, 2 * len(array)), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best candidates by score descending and then id ascending, padded with -1 / -inf.

    `ids` is (m, c) or one (c,) row shared by all; an ineligible candidate scores -inf.
    """
    ids = np.broadcast_to(ids, scores.shape)
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # the k best, ties cut arbitrarily
        kth = np.take_along_axis(scores, part, 1).min(1)
        cut_in_a_tie = ((scores >= kth[:, None]).sum(1) > k) & (kth > -np.inf)
        for r in np.flatnonzero(cut_in_a_tie):  # keep the lowest ids among those tied with the k-th
            cand = np.flatnonzero(scores[r] >= kth[r])
            part[r] = cand[np.lexsort((ids[r, cand], -scores[r, cand]))[:k]]
        ids, scores = np.take_along_axis(ids, part, 1), np.take_along_axis(scores, part, 1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1).astype(np.float32)
    pad = k - ids.shape[1]
    ids = np.pad(np.where(scores > -np.inf, ids, -1), ((0, 0), (0, pad)), constant_values=-1)
    return ids, np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)


class VectorIndex:
    """Inner-product top-k over item vectors keyed by item index (non-negative int64 ids)."""

    def __init__(
        self,
        dim: int,
        *,
        exact_below: int = 20_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 200,
        graph: Literal["auto", "ip", "l2"] = "auto",
    ) -> None:
        """`graph` forces the HNSW graph ("ip": inner product, "l2": after the MIPS -> L2 reduction);
        "auto" builds both and keeps the better on the probe."""
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if graph not in ("auto", "ip", "l2"):
            raise ValueError(f"graph must be 'auto', 'ip' or 'l2', got {graph!r}")
        self.dim = dim
        self.exact_below = exact_below
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.graph_choice = graph
        self.probe_recall: dict[str, float] = {}  # Recall@20 of each graph on the probe, last build
        self._probe: np.ndarray | None = None
        self._graph: Graph | None = None
        self._max_norm = 0.0  # M of the L2 graph
        self._over = np.zeros(0, dtype=bool)  # L2 graph: id -> norm above M, scored exactly
        self._live = np.zeros(0, dtype=bool)  # id -> stored and not removed
        self._row = np.zeros(0, dtype=np.int64)  # HNSW: id -> its row in the graph, -1 when none
        self._label = np.zeros(0, dtype=np.int64)  # HNSW: row -> id, -1 for a tombstone
        self._count = 0
        self._kind: Literal["exact", "hnsw"] = "exact"
        self._index: faiss.Index
        self._build(np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32))

    @property
    def kind(self) -> Literal["exact", "hnsw"]:
        """Which search answers queries now (serving reports it)."""
        return self._kind

    @property
    def graph(self) -> Graph | None:
        """The HNSW graph in use: "ip" (inner product) or "l2" (MIPS -> L2); None for exact search."""
        return self._graph

    @property
    def overflow(self) -> int:
        """Items above the L2 graph's max norm, scored exactly by every query (0 otherwise)."""
        return int(self._over.sum())

    def set_probe(self, queries: np.ndarray | None) -> None:
        """Queries that choose the graph at the next HNSW build (crossing `exact_below`, `rebuild()`);
        None or no rows: a seeded sample of the items' own vectors. Set it before the `add` that
        crosses the threshold; it does not rebuild by itself."""
        if queries is None:
            self._probe = None
            return
        queries = np.array(queries, dtype=np.float32, copy=True)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"probe queries must have shape (n, {self.dim}), got {queries.shape}")
        if not np.isfinite(queries).all():
            raise ValueError("probe queries must be finite")
        self._probe = queries if len(queries) else None

    @property
    def tombstones(self) -> int:
        """Removed or replaced HNSW rows still in the graph (always 0 for exact search)."""
        return self._index.ntotal - self._count

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: faiss's serialised index plus the id maps (allocator overhead and
        IndexIDMap2's reverse hash map not counted)."""
        maps = self._live.nbytes + self._row.nbytes + self._label.nbytes + self._over.nbytes
        return len(faiss.serialize_index(self._index)) + maps

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer):
            return False
        return 0 <= int(item) < len(self._live) and bool(self._live[int(item)])

    def vector(self, item: int) -> np.ndarray:
        """The stored vector of one item (a copy); KeyError when the index does not hold it."""
        if item not in self:
            raise KeyError(item)
        return self._vectors(np.array([item], dtype=np.int64))[0]

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert items, replacing any already held (an id repeated within one call: the last wins)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(ids) and ids.min() < 0:
            raise ValueError("ids are item indices and must be >= 0")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite")
        if len(ids) == 0:
            return
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
        self._live = _grown(self._live, int(ids.max()) + 1, False)
        self._over = _grown(self._over, len(self._live), False)
        replaced = ids[self._live[ids]]
        crossing = self._kind == "exact" and self._count + len(ids) - len(replaced) >= self.exact_below
        if crossing or (self._kind == "hnsw" and self._index.ntotal == 0):  # (an empty graph chose nothing)
            kept = np.setdiff1d(np.flatnonzero(self._live), ids)
            self._build(np.concatenate([kept, ids]), np.concatenate([self._vectors(kept), vectors]))
            return
        if self._kind == "exact":
            if len(replaced):
                self._index.remove_ids(replaced)
            self._index.add_with_ids(vectors, ids)
        else:
            self._row = _grown(self._row, len(self._live), -1)
            self._label[self._row[replaced]] = -1
            start = self._index.ntotal
            self._index.add(lift(vectors, self._max_norm) if self._graph == "l2" else vectors)
            if self._graph == "l2":
                self._over[ids] = np.linalg.norm(vectors.astype(np.float64), axis=1) > self._max_norm
            self._label = _grown(self._label, start + len(ids), -1)
            self._label[start : start + len(ids)] = ids
            self._row[ids] = np.arange(start, start + len(ids))
        self._live[ids] = True
        self._count += len(ids) - len(replaced)
        if (
            self.tombstones > REBUILD_SHARE * self._index.ntotal
            or self.overflow > OVERFLOW_SHARE * self._count
        ):
            self.rebuild()

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        """Drop items; ids the index does not hold are ignored (removing twice is harmless)."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        ids = ids[(ids >= 0) & (ids < len(self._live))]
        ids = ids[self._live[ids]]
        if len(ids) == 0:
            return
        if self._kind == "exact":
            self._index.remove_ids(ids)
        else:
            self._label[self._row[ids]] = -1
            self._row[ids] = -1
            self._over[ids] = False
        self._live[ids] = False
        self._count -= len(ids)

    def rebuild(self) -> None:
        """Rebuild from the live items: drops tombstones, picks exact or HNSW for the current size, and
        chooses the graph again."""
        ids = np.flatnonzero(self._live)
        self._build(ids, self._vectors(ids))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[Sequence[int] | np.ndarray] | None = None,
        allowed: Allowed = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per query by inner product: (ids (n, k) int64, scores (n, k) float32), best first.

        `exclude[i]` lists ids query i must not get (e.g. the user's history); `allowed` is a boolean
        mask over ids (ids past its end are not allowed) or a set of ids. Rows are padded with id -1
        and score -inf only when fewer than k items are eligible.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        if not np.isfinite(queries).all():
            raise ValueError("queries must be finite")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n = len(queries)
        if exclude is not None and len(exclude) != n:
            raise ValueError(f"exclude has {len(exclude)} lists for {n} queries")
        excluded = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude] if exclude else None
        mask = self._allowed_mask(allowed)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        eligible = self._count if mask is None else int(mask.sum())
        if n == 0 or eligible == 0:
            return out_ids, out_scores
        if eligible < EXACT_FILTER_SHARE * self._count:
            pending = np.arange(n)
        else:
            pending = self._search_index(queries, k, excluded, mask, eligible, out_ids, out_scores)
        if len(pending):
            candidates = np.flatnonzero(self._live if mask is None else mask)
            self._search_exact(queries, pending, k, candidates, excluded, out_ids, out_scores)
        return out_ids, out_scores

    def _search_index(
        self,
        queries: np.ndarray,
        k: int,
        excluded: list[np.ndarray] | None,
        mask: np.ndarray | None,
        eligible: int,
        out_ids: np.ndarray,
        out_scores: np.ndarray,
    ) -> np.ndarray:
        """Fill the rows the faiss index answers in full; return the rows left for exact search.

        Each query fetches k + its exclusions, scaled up by the share of stored rows that tombstones and
        the filter leave eligible, rounded up to a power of two so that queries asking about as much
        are searched together; a query short of k eligible results doubles its fetch.
        """
        ntotal = self._index.ntotal
        wanted = k + np.array([len(e) for e in excluded] if excluded else [0] * len(queries))
        share = eligible / ntotal
        fetch = wanted if share == 1 else np.ceil(1.5 * wanted / share)
        fetch = np.minimum(ntotal, 2 ** np.ceil(np.log2(fetch))).astype(np.int64)
        span = len(self._live) + 1  # (query, id) pairs as one key: query * span + id
        keys = None
        if excluded:
            keys = np.unique(
                np.concatenate([i * span + e[(e >= 0) & (e < span - 1)] for i, e in enumerate(excluded)])
            )
        over = np.flatnonzero(self._over & (self._live if mask is None else mask))
        over_vectors = self._vectors(over)
        pending, left = np.arange(len(queries)), []
        while len(pending):
            unfinished = []
            for f in np.unique(fetch[pending]):
                rows = pending[fetch[pending] == f]
                if self._kind == "hnsw" and f >= ntotal:
                    left.append(rows)  # walking the whole graph costs more than scanning it
                    continue
                if self._kind == "exact":
                    scores, found = self._index.search(queries[rows], int(f))
                else:
                    scores, rows_found = search_graph(
                        self._index, self._graph, queries[rows], int(f), max(self.ef_search, int(f))
                    )
                    found = np.where(rows_found >= 0, self._label[np.maximum(rows_found, 0)], -1)
                ok = found >= 0
                if mask is not None:
                    ok &= mask[found]
                if len(over):  # items above the L2 graph's max norm: scored exactly, not from the graph
                    ok &= ~self._over[found]
                last = scores[:, -1]
                if len(over):
                    found = np.hstack([found, np.broadcast_to(over, (len(rows), len(over)))])
                    scores = np.hstack([scores, queries[rows] @ over_vectors.T])
                    ok = np.hstack([ok, np.ones((len(rows), len(over)), dtype=bool)])
                    order = np.argsort(-scores, axis=1, kind="stable")
                    found, scores, ok = (np.take_along_axis(a, order, 1) for a in (found, scores, ok))
                if keys is not None:
                    ok &= ~np.isin(rows[:, None] * span + found, keys)
                # Done once k eligible came back and nothing fetched from the graph ties the k-th (a
                # tie at the boundary could hide a lower id further on), or when the scan covered
                # every item.
                counts = ok.sum(1)
                kth = scores[np.arange(len(rows)), np.argmax(np.cumsum(ok, 1) >= k, axis=1)]
                done = ((counts >= k) & (last < kth)) | (self._kind == "exact" and f >= ntotal)
                ids, best = _best(np.where(ok, found, -1)[done], np.where(ok, scores, -np.inf)[done], k)
                out_ids[rows[done]], out_scores[rows[done]] = ids, best
                unfinished.append(rows[~done])
            pending = np.concatenate(unfinished) if unfinished else pending[:0]
            fetch[pending] = np.minimum(2 * fetch[pending], ntotal)
        return np.concatenate(left) if left else pending

    def _search_exact(
        self,
        queries: np.ndarray,
        rows: np.ndarray,
        k: int,
        candidates: np.ndarray,
        excluded: list[np.ndarray] | None,
        out_ids: np.ndarray,
        out_scores: np.ndarray,
    ) -> None:
        """Brute-force the given rows over the candidate ids (sorted, all live)."""
        scores = queries[rows] @ self._vectors(candidates).T
        if excluded is not None:
            for j, row in enumerate(rows):
                at = np.searchsorted(candidates, excluded[row]).clip(max=len(candidates) - 1)
                scores[j, at[candidates[at] == excluded[row]]] = -np.inf
        out_ids[rows], out_scores[rows] = _best(candidates, scores, k)

    def _allowed_mask(self, allowed: Allowed) -> np.ndarray | None:
        """The filter as a mask over the live ids (live and allowed)."""
        if allowed is None:
            return None
        if isinstance(allowed, Set):
            wanted = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
            mask = np.zeros(len(self._live), dtype=bool)
            mask[wanted[(wanted >= 0) & (wanted < len(mask))]] = True
        else:
            given = np.asarray(allowed)
            if given.dtype != bool or given.ndim != 1:
                raise ValueError("allowed must be a 1-D boolean mask over ids or a set of ids")
            mask = np.zeros(len(self._live), dtype=bool)
            mask[: min(len(given), len(mask))] = given[: len(mask)]
        return mask & self._live

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of live ids, in the order given."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = ids if self._kind == "exact" else self._row[ids]
        stored = self._index.reconstruct_batch(np.ascontiguousarray(keys, dtype=np.int64))
        return np.ascontiguousarray(stored[:, : self.dim]) if self._graph == "l2" else stored

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """A fresh faiss index over exactly these items (ids unique), of the kind their number calls for."""
        self._kind = "hnsw" if len(ids) >= self.exact_below else "exact"
        self._live = _grown(self._live, int(ids.max()) + 1 if len(ids) else 0, False)
        self._live[:] = False
        self._live[ids] = True
        self._count = len(ids)
        self._over = np.zeros(len(self._live), dtype=bool)
        if self._kind == "exact":
            self._graph = None
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            self._index.add_with_ids(vectors, ids)
            self._row = np.zeros(0, dtype=np.int64)
            self._label = np.zeros(0, dtype=np.int64)
        else:
            self._max_norm = max_norm(vectors)
            settings = GraphSettings(self.hnsw_m, self.ef_construction, self.ef_search)
            if self.graph_choice == "auto":
                self._graph, self._index, self.probe_recall = choose_graph(
                    vectors, self._max_norm, settings, self._probe
                )
            else:
                self._graph, self.probe_recall = self.graph_choice, {}
                self._index = new_graph(self._graph, vectors, self._max_norm, settings)
            self._label = ids.astype(np.int64, copy=True)
            self._row = np.full(len(self._live), -1, dtype=np.int64)
            self._row[ids] = np.arange(len(ids))
