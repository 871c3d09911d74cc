"""VectorIndex against numpy brute force on the current item set, through adds, removes, upserts,
filters, exclusions and the switch from exact search to HNSW."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrec.serve.hnsw import search_graph
from crossrec.serve.index import VectorIndex

DIM = 16


def brute(
    store: dict[int, np.ndarray],
    queries: np.ndarray,
    k: int,
    exclude: list[np.ndarray] | None = None,
    allowed: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by dot product over the eligible items, ties to the lower id, padded with -1 / -inf."""
    ids = np.array(sorted(store), dtype=np.int64)
    vectors = np.stack([store[int(i)] for i in ids]) if len(ids) else np.zeros((0, queries.shape[1]))
    scores = queries.astype(np.float64) @ vectors.T.astype(np.float64)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores = np.full((len(queries), k), -np.inf)
    for row in range(len(queries)):
        ok = np.ones(len(ids), dtype=bool)
        if exclude is not None:
            ok &= ~np.isin(ids, exclude[row])
        if allowed is not None:
            ok &= np.isin(ids, list(allowed))
        cand, s = ids[ok], scores[row, ok]
        order = np.lexsort((cand, -s))[:k]
        out_ids[row, : len(order)], out_scores[row, : len(order)] = cand[order], s[order]
    return out_ids, out_scores


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k that was found."""
    return float(
        np.mean(
            [
                len(np.intersect1d(f[f >= 0], t[t >= 0])) / (t >= 0).sum()
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def gaussian(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def hnsw_items() -> np.ndarray:
    return gaussian(3000, seed=1)


@pytest.fixture(scope="module")
def hnsw_index(hnsw_items: np.ndarray) -> VectorIndex:
    index = VectorIndex(DIM, exact_below=500)
    index.add(np.arange(len(hnsw_items)), hnsw_items)
    return index


def test_exact_search_matches_brute_force() -> None:
    items, queries = gaussian(300, seed=0), gaussian(20, seed=9)
    ids = np.random.default_rng(3).permutation(1000)[:300]
    index = VectorIndex(DIM)
    index.add(ids, items)
    found, scores = index.search(queries, 10)
    truth, truth_scores = brute(dict(zip(ids.tolist(), items, strict=True)), queries, 10)
    assert index.kind == "exact"
    assert found.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-5, atol=1e-5)


def test_vectors_are_stored_as_given_not_normalised() -> None:
    index = VectorIndex(3)
    index.add([4, 7], np.array([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    np.testing.assert_array_equal(index.vector(7), np.array([0.0, 0.5, 0.0], dtype=np.float32))
    _, scores = index.search(np.array([[2.0, 2.0, 0.0]]), 2)
    np.testing.assert_array_equal(scores, [[6.0, 1.0]])


@pytest.mark.parametrize(
    ("exact_below", "graph"), [(10_000, "auto"), (200, "auto"), (200, "ip"), (200, "l2")]
)
def test_add_remove_upsert_track_the_current_set(exact_below: int, graph: str) -> None:
    """Brute force over what the index should hold now; HNSW (either graph) is held to recall and to
    never returning a removed id or a replaced vector's old score."""
    index = VectorIndex(DIM, exact_below=exact_below, graph=graph)  # type: ignore[arg-type]
    store: dict[int, np.ndarray] = {}
    first = gaussian(400, seed=2)
    index.add(np.arange(400), first)
    store.update(enumerate(first))
    index.remove(np.arange(0, 400, 3))
    for i in range(0, 400, 3):
        del store[i]
    upserted = gaussian(50, seed=4) * 3  # larger norms: the replaced items move to the top
    index.add(np.arange(1, 100, 2), upserted)
    store.update(zip(range(1, 100, 2), upserted, strict=True))
    index.add(np.arange(400, 450), gaussian(50, seed=5))
    store.update(zip(range(400, 450), gaussian(50, seed=5), strict=True))
    queries = gaussian(30, seed=6)
    found, scores = index.search(queries, 20)
    truth, _ = brute(store, queries, 20)
    assert len(index) == len(store) and all(i in index for i in store)
    assert not any(i in index for i in range(0, 400, 3) if i not in store)
    assert np.isin(found, list(store)).all()
    expected = np.einsum(
        "nd,nkd->nk", queries, np.stack([np.stack([store[int(i)] for i in r]) for r in found])
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)  # the current vector's score
    if index.kind == "exact":
        np.testing.assert_array_equal(found, truth)
    else:
        assert recall(found, truth) >= 0.98
        assert graph == "auto" or index.graph == graph
        # upserted items with 3x the norms can overflow the L2 graph's max norm: scored exactly
        assert index.graph == "l2" or index.overflow == 0


def test_upsert_within_one_call_keeps_the_last_vector() -> None:
    index = VectorIndex(2)
    index.add([1, 1, 2], np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert len(index) == 2
    np.testing.assert_array_equal(index.vector(1), [0.0, 1.0])


def test_ties_go_to_the_lower_id_whatever_the_insertion_order() -> None:
    index = VectorIndex(4)
    ids = np.random.default_rng(0).permutation(200)
    index.add(ids, np.ones((200, 4)))
    found, _ = index.search(np.ones((2, 4)), 5, exclude=[[0, 2], []])
    np.testing.assert_array_equal(found, [[1, 3, 4, 5, 6], [0, 1, 2, 3, 4]])


def test_hnsw_recall_against_exact(hnsw_index: VectorIndex, hnsw_items: np.ndarray) -> None:
    queries = gaussian(200, seed=7)
    found, _ = hnsw_index.search(queries, 20)
    truth, _ = brute(dict(enumerate(hnsw_items)), queries, 20)
    assert hnsw_index.kind == "hnsw"
    assert recall(found, truth) >= 0.98


@pytest.mark.parametrize("graph", ["ip", "l2"])
def test_each_graph_matches_brute_force_with_inner_product_scores(hnsw_items: np.ndarray, graph: str) -> None:
    """Either graph: recall, scores that are the real inner products (never L2 distances), filters and
    exclusions that keep k, stored vectors returned as given."""
    index = VectorIndex(DIM, exact_below=500, graph=graph)  # type: ignore[arg-type]
    index.add(np.arange(len(hnsw_items)), hnsw_items)
    assert index.kind == "hnsw" and index.graph == graph and index.probe_recall == {}
    np.testing.assert_array_equal(index.vector(17), hnsw_items[17])
    store = dict(enumerate(hnsw_items))
    queries = gaussian(100, seed=7)
    found, scores = index.search(queries, 20)
    truth, _ = brute(store, queries, 20)
    assert recall(found, truth) >= 0.98
    expected = np.einsum("nd,nkd->nk", queries, hnsw_items[found])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    mask = np.random.default_rng(1).random(3000) < 0.3
    exclude = [row[:30] for row in truth]
    found, _ = index.search(queries, 20, exclude=exclude, allowed=mask)
    assert (found >= 0).all() and mask[found].all()
    assert not any(np.isin(row, ex).any() for row, ex in zip(found, exclude, strict=True))
    allowed = set(np.flatnonzero(mask).tolist())
    assert recall(found, brute(store, queries, 20, exclude, allowed)[0]) >= 0.95


def pareto_items(n: int, seed: int) -> np.ndarray:
    """Gaussian directions with heavy-tailed (1 + Pareto(2)) norms: inner-product HNSW's case."""
    rng = np.random.default_rng(seed)
    items = gaussian(n, seed)
    return items * ((1 + rng.pareto(2.0, n)) / np.linalg.norm(items, axis=1)).astype(np.float32)[:, None]


def tight_clusters(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries in 10 tight clusters (spread 0.05): on small graphs, the L2 graph's case."""
    rng = np.random.default_rng(seed)
    centers = gaussian(10, seed + 10)
    items = centers[rng.integers(0, 10, n)] + 0.05 * gaussian(n, seed + 20)
    queries = centers[rng.integers(0, 10, n_queries)] + 0.05 * gaussian(n_queries, seed + 30)
    return items.astype(np.float32), queries.astype(np.float32)


@pytest.mark.parametrize("case", ["pareto", "clusters"])
def test_the_graph_with_the_better_probe_recall_is_kept(case: str) -> None:
    """Small graphs (M 8, ef 16) on data where one graph clearly wins: the index keeps it, and it also
    wins on held-out queries."""
    if case == "pareto":
        items, queries, winner = pareto_items(3000, seed=1), gaussian(400, seed=2), "ip"
    else:
        (items, queries), winner = tight_clusters(3000, 400, seed=2), "l2"
    small = {"exact_below": 100, "hnsw_m": 8, "ef_search": 16, "ef_construction": 32}
    index = VectorIndex(DIM, **small)  # type: ignore[arg-type]
    index.set_probe(queries[:200])
    index.add(np.arange(len(items)), items)
    loser = "l2" if winner == "ip" else "ip"
    assert index.graph == winner and set(index.probe_recall) == {"ip", "l2"}
    assert index.probe_recall[winner] > index.probe_recall[loser] + 0.1
    other = VectorIndex(DIM, graph=loser, **small)  # type: ignore[arg-type]
    other.add(np.arange(len(items)), items)
    held_out = queries[200:]
    truth, _ = brute(dict(enumerate(items)), held_out, 20)
    assert faiss_recall(index, held_out, truth) > faiss_recall(other, held_out, truth) + 0.05


def faiss_recall(index: VectorIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    """Recall@20 of the graph alone (one faiss search at the index's ef_search, no refetching)."""
    _, rows = search_graph(index._index, index.graph, queries, 20, index.ef_search)
    return recall(np.where(rows >= 0, index._label[np.maximum(rows, 0)], -1), truth)


def test_without_a_probe_the_items_choose_and_rebuild_chooses_again() -> None:
    items = pareto_items(3000, seed=1)
    index = VectorIndex(DIM, exact_below=100, hnsw_m=8, ef_search=16, ef_construction=32)
    index.add(np.arange(len(items)), items)  # no probe: a seeded sample of the items' own vectors
    assert index.graph == "ip" and index.probe_recall["ip"] > index.probe_recall["l2"]
    first = dict(index.probe_recall)
    index.rebuild()
    assert index.probe_recall == first  # the same seeded sample
    cluster_items, cluster_queries = tight_clusters(3000, 400, seed=2)
    index.set_probe(cluster_queries[:200])
    index.add(np.arange(len(cluster_items)), cluster_items)  # upserts all: tombstones force a rebuild
    assert index.tombstones == 0 and index.graph == "l2"
    index.set_probe(None)
    empty = VectorIndex(DIM, exact_below=0, hnsw_m=8, ef_search=16, ef_construction=32)
    empty.set_probe(cluster_queries[:200])
    assert empty.kind == "hnsw" and empty.probe_recall == {}
    empty.add(np.arange(len(cluster_items)), cluster_items)  # the first items choose the graph
    assert empty.graph == "l2" and set(empty.probe_recall) == {"ip", "l2"}
    with pytest.raises(ValueError, match="probe"):
        index.set_probe(np.zeros((3, DIM + 1)))
    with pytest.raises(ValueError, match="finite"):
        index.set_probe(np.full((1, DIM), np.inf))


def test_a_later_item_above_the_l2_graphs_max_norm_is_scored_exactly(hnsw_items: np.ndarray) -> None:
    """It cannot be lifted onto the L2 graph's sphere: every query scores it exactly, until such items
    pass 1% of the catalogue and an add rebuilds with the new max norm."""
    index = VectorIndex(DIM, exact_below=500, graph="l2")
    index.add(np.arange(3000), hnsw_items)
    max_norm = float(np.linalg.norm(hnsw_items, axis=1).max())
    queries = gaussian(20, seed=21)
    big = 3 * max_norm * queries[:1] / np.linalg.norm(queries[0])
    index.add([7000], big)
    assert index.overflow == 1 and index.graph == "l2"
    store = {**dict(enumerate(hnsw_items)), 7000: big[0]}
    found, scores = index.search(queries, 20)
    truth, _ = brute(store, queries, 20)
    assert found[0, 0] == 7000 and scores[0, 0] == pytest.approx(float(queries[0] @ big[0]), rel=1e-5)
    assert recall(found, truth) >= 0.98 and np.isin(7000, truth) == np.isin(7000, found)
    assert found[0, 0] not in index.search(queries[:1], 20, exclude=[[7000]])[0]
    index.remove([7000])
    assert index.overflow == 0 and 7000 not in index.search(queries, 20)[0]
    index.add([7000], big / 10)  # back under the max norm: on the graph
    assert index.overflow == 0
    many = 3 * max_norm * gaussian(40, seed=22) / np.linalg.norm(gaussian(40, seed=22), axis=1)[:, None]
    index.add(np.arange(8000, 8040), many)  # 40 > 1% of the items: rebuilt around the new max norm
    assert index.overflow == 0 and index.tombstones == 0 and index.graph == "l2"
    store.update({7000: big[0] / 10, **dict(zip(range(8000, 8040), many, strict=True))})
    found, scores = index.search(queries, 20)
    assert np.isin(np.arange(8000, 8040), found).any()
    # a 3x larger max norm flattens the lifted sphere: the L2 graph's recall drops, as it does on
    # heavy-tailed norms (an "auto" index would weigh it against the inner-product graph here)
    assert recall(found, brute(store, queries, 20)[0]) >= 0.9


def test_hnsw_removes_deleted_ids_and_rebuilds_on_the_next_add(hnsw_items: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_below=500)
    index.add(np.arange(3000), hnsw_items)
    queries = gaussian(50, seed=8)
    top, _ = index.search(queries, 20)
    gone = np.unique(top[:, :10])  # the deleted ids are exactly the ones queries would return
    index.remove(gone)
    found, _ = index.search(queries, 20)
    assert index.tombstones == len(gone) and len(index) == 3000 - len(gone)
    assert not np.isin(found, gone).any() and (found >= 0).all()
    store = {i: v for i, v in enumerate(hnsw_items) if i not in set(gone.tolist())}
    assert recall(found, brute(store, queries, 20)[0]) >= 0.98
    index.remove(np.arange(600, 1300))  # past the rebuild share: compacted on the next add
    index.add([5000], hnsw_items[:1])
    assert index.tombstones == 0 and index.kind == "hnsw"
    assert len(index) == len(set(range(3000)) - set(gone.tolist()) - set(range(600, 1300))) + 1
    assert 5000 in index and 650 not in index and not np.isin(index.search(queries, 20)[0], gone).any()


def test_rebuild_below_the_threshold_returns_to_exact_search(hnsw_items: np.ndarray) -> None:
    index = VectorIndex(DIM, exact_below=500)
    index.add(np.arange(600), hnsw_items[:600])
    index.remove(np.arange(300))
    index.rebuild()
    queries = gaussian(10, seed=3)
    assert index.kind == "exact" and len(index) == 300
    found, _ = index.search(queries, 10)
    np.testing.assert_array_equal(
        found, brute(dict(zip(range(300, 600), hnsw_items[300:600], strict=True)), queries, 10)[0]
    )


def test_crossing_the_threshold_switches_to_hnsw_and_keeps_every_item() -> None:
    first, second = gaussian(90, seed=10), gaussian(40, seed=11)
    index = VectorIndex(DIM, exact_below=100)
    index.add(np.arange(90), first)
    assert index.kind == "exact"
    index.add(np.arange(80, 120), second)  # 10 upserts, 30 new: 120 items
    assert index.kind == "hnsw" and len(index) == 120
    store = {**dict(enumerate(first)), **dict(zip(range(80, 120), second, strict=True))}
    for i, v in store.items():
        np.testing.assert_array_equal(index.vector(i), v)
    found, _ = index.search(gaussian(3, seed=12), 120)
    assert all(sorted(row) == list(range(120)) for row in found.tolist())


def test_exclusions_keep_k_results_on_hnsw(hnsw_index: VectorIndex, hnsw_items: np.ndarray) -> None:
    queries = gaussian(20, seed=13)
    top, _ = hnsw_index.search(queries, 200)
    exclude = [row[:150] for row in top]  # far more exclusions than ef_search alone would cover
    found, _ = hnsw_index.search(queries, 20, exclude=exclude)
    assert (found >= 0).all()
    for row, ex in zip(found, exclude, strict=True):
        assert len(set(row.tolist())) == 20 and not np.isin(row, ex).any()
    truth, _ = brute(dict(enumerate(hnsw_items)), queries, 20, exclude=exclude)
    assert recall(found, truth) >= 0.95


@pytest.mark.parametrize("share", [0.5, 0.1, 0.01])
def test_filters_keep_k_results_on_hnsw(
    hnsw_index: VectorIndex, hnsw_items: np.ndarray, share: float
) -> None:
    """A broad filter goes through the graph, a selective one (under 5%) through exact search."""
    rng = np.random.default_rng(int(share * 100))
    mask = rng.random(3000) < share
    queries = gaussian(20, seed=14)
    found, _ = hnsw_index.search(queries, 20, allowed=mask)
    assert (found >= 0).all() and mask[found].all()
    assert all(len(set(row)) == 20 for row in found.tolist())
    truth, _ = brute(dict(enumerate(hnsw_items)), queries, 20, allowed=set(np.flatnonzero(mask).tolist()))
    if share < 0.05:
        np.testing.assert_array_equal(found, truth)
    else:
        assert recall(found, truth) >= 0.95


def test_a_selective_filter_never_walks_the_graph(
    hnsw_index: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under 5% allowed: exact over the allowed vectors, since HNSW would visit most of the graph."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the graph was searched")

    monkeypatch.setattr(hnsw_index._index, "search", refuse)
    found, _ = hnsw_index.search(gaussian(2, seed=16), 5, allowed=set(range(0, 3000, 50)))
    assert (found % 50 == 0).all() and (found >= 0).all()
    with pytest.raises(AssertionError, match="graph"):
        hnsw_index.search(gaussian(2, seed=16), 5, allowed=set(range(0, 3000, 10)))


def test_pads_only_when_fewer_than_k_are_eligible(hnsw_index: VectorIndex) -> None:
    queries = gaussian(2, seed=15)
    found, scores = hnsw_index.search(queries, 5, allowed={7, 3, 2999, 10**6}, exclude=[[3], []])
    assert sorted(found[0, :2]) == [7, 2999] and (found[0, 2:] == -1).all()
    assert sorted(found[1, :3]) == [3, 7, 2999] and (found[1, 3:] == -1).all()
    assert np.isneginf(scores[found == -1]).all()
    assert VectorIndex(DIM).search(queries, 3)[0].tolist() == [[-1] * 3] * 2


def test_a_mask_shorter_than_the_ids_allows_only_what_it_covers() -> None:
    index = VectorIndex(2)
    index.add(np.arange(10), np.arange(20, dtype=np.float32).reshape(10, 2))
    found, _ = index.search(np.ones((1, 2)), 3, allowed=np.array([True, False, True]))
    assert found.tolist() == [[2, 0, -1]]


def test_bad_input_is_refused() -> None:
    index = VectorIndex(4)
    with pytest.raises(ValueError, match="shape"):
        index.add([1, 2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        index.add([-1], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="finite"):
        index.add([1], np.full((1, 4), np.nan))
    index.add([1], np.ones((1, 4)))
    with pytest.raises(ValueError, match="exclude"):
        index.search(np.ones((2, 4)), 1, exclude=[[1]])
    with pytest.raises(ValueError, match="k must"):
        index.search(np.ones((1, 4)), 0)
    with pytest.raises(ValueError, match="allowed"):
        index.search(np.ones((1, 4)), 1, allowed=np.array([1, 0]))
    with pytest.raises(KeyError):
        index.vector(2)
    assert "1" not in index and 1 in index and -1 not in index
    index.remove([1, 1, 99, -5])
    assert len(index) == 0 and 1 not in index


operation = st.one_of(
    st.tuples(st.just("add"), st.lists(st.integers(0, 40), min_size=1, max_size=25), st.integers(0, 2**31)),
    st.tuples(st.just("remove"), st.lists(st.integers(0, 45), max_size=15), st.just(0)),
)


@settings(max_examples=80, deadline=None)
@given(
    operations=st.lists(operation, min_size=1, max_size=5),
    exact_below=st.sampled_from([1_000, 8]),
    graph=st.sampled_from(["auto", "ip", "l2"]),
    k=st.integers(1, 12),
    n_excluded=st.integers(0, 10),
    filtered=st.sampled_from(["none", "mask", "set"]),
    seed=st.integers(0, 2**31),
)
def test_property_k_valid_results_whenever_k_are_eligible(
    operations: list[tuple[str, list[int], int]],
    exact_below: int,
    graph: str,
    k: int,
    n_excluded: int,
    filtered: str,
    seed: int,
) -> None:
    """Small integer vectors make exact ties common: the exact path must equal brute force with ties
    to the lower id; HNSW must return min(k, eligible) distinct eligible ids with their true scores."""
    index = VectorIndex(4, exact_below=exact_below, hnsw_m=4, ef_search=4, ef_construction=8, graph=graph)  # type: ignore[arg-type]
    store: dict[int, np.ndarray] = {}
    for op, ids, vec_seed in operations:
        if op == "add":
            vectors = np.random.default_rng(vec_seed).integers(-2, 3, (len(ids), 4)).astype(np.float32)
            index.add(ids, vectors)
            store.update(zip(ids, vectors, strict=True))
        else:
            index.remove(ids)
            for i in ids:
                store.pop(i, None)
    rng = np.random.default_rng(seed)
    queries = rng.integers(-2, 3, (3, 4)).astype(np.float32)
    exclude = [rng.integers(0, 45, n_excluded) for _ in queries]
    allowed_ids = set(rng.integers(0, 45, 20).tolist()) if filtered != "none" else None
    allowed = None if allowed_ids is None else allowed_ids
    if filtered == "mask":
        allowed = np.isin(np.arange(45), list(allowed_ids))
    found, scores = index.search(queries, k, exclude=exclude, allowed=allowed)
    truth, _ = brute(store, queries, k, exclude, allowed_ids)
    assert len(index) == len(store)
    np.testing.assert_array_equal(found == -1, truth == -1)  # as many results as eligible items, up to k
    if index.kind == "exact":
        np.testing.assert_array_equal(found, truth)
    for row, row_scores, q, ex in zip(found, scores, queries, exclude, strict=True):
        got = row[row >= 0]
        assert len(set(got.tolist())) == len(got) and not np.isin(got, ex).any()
        assert allowed_ids is None or set(got.tolist()) <= allowed_ids
        true_scores = np.array([q @ store[int(i)] for i in got], dtype=np.float32)
        np.testing.assert_array_equal(row_scores[: len(got)], true_scores)
        assert (np.diff(true_scores) <= 0).all()
        ties = np.diff(true_scores) == 0
        assert (np.diff(got)[ties] > 0).all()  # equal scores in id order
