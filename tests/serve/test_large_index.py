"""The IVF-PQ index over a vectors file: built a chunk at a time, compressed in memory, and close to
exact search once candidates are re-ranked from the file."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.errors import ConfigError
from crossrec.serve.large_index import LargeIndex, LargeIndexSettings


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    rows = centres[rng.integers(0, 64, size=n)] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows * rng.lognormal(0.0, 0.3, size=(n, 1))).astype(np.float32)  # a spread of norms


def test_chunked_build_is_compressed_and_recalls_exact_search(tmp_path):
    vectors = _clustered(30_000, 32, seed=0)
    path = tmp_path / "items.npy"
    np.save(path, vectors)
    settings = LargeIndexSettings(nlist=128, m=16, train_size=10_000, chunk=7_000, nprobe=32, rerank=200)
    index = LargeIndex.build(path, settings)
    assert len(index) == 30_000 and index.nbytes < vectors.nbytes / 4
    queries = _clustered(200, 32, seed=1)
    ids, scores = index.search(queries, 20)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :20]
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.95
    # Served scores are the real dot products, best first.
    assert np.allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[ids]), atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_a_file_of_the_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10, 30), dtype=np.float32))
    with pytest.raises(ConfigError, match="multiple of m=32"):
        LargeIndex.build(tmp_path / "v.npy")
    np.save(tmp_path / "w.npy", np.zeros(10, dtype=np.float64))
    with pytest.raises(ConfigError, match="2-d float32"):
        LargeIndex.build(tmp_path / "w.npy")
