"""An index for catalogues that do not fit in memory as float vectors: IVF-PQ codes in memory, the
vectors themselves on disk (a .npy file read through a memory map), candidates re-ranked exactly.

Built in one pass over the file, a chunk at a time: the coarse and product quantisers are trained on
a seeded sample of rows, then every chunk is encoded and added, so the build holds the index and
one chunk. (The MIPS -> L2 reduction that suits some HNSW graphs did worse here: with a spread of
norms the lifted coordinate dominates and the product quantiser loses the differences that rank.)
A query takes `rerank` candidates from the compressed codes and scores them exactly from the file,
so the scores served are the real dot products and the order among candidates is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from crossrec.errors import ConfigError


@dataclass(frozen=True)
class LargeIndexSettings:
    nlist: int = 2048  # coarse cells (about sqrt(n) to 4 sqrt(n); faiss wants 39 training rows per cell)
    m: int = 32  # sub-quantisers: bytes per item in the codes (d / m dimensions each)
    nbits: int = 8
    train_size: int = 100_000  # rows sampled to train both quantisers
    chunk: int = 100_000  # rows read and added at a time
    nprobe: int = 64
    rerank: int = 500
    seed: int = 0


class LargeIndex:
    """Inner-product search over the rows of a (n, d) float32 .npy file; ids are row numbers."""

    def __init__(self, path: str | Path, index: faiss.IndexIVFPQ, settings: LargeIndexSettings) -> None:
        self.path, self.settings, self._index = Path(path), settings, index
        self._vectors = np.load(self.path, mmap_mode="r")

    @classmethod
    def build(cls, path: str | Path, settings: LargeIndexSettings | None = None) -> LargeIndex:
        settings = settings or LargeIndexSettings()
        vectors = np.load(path, mmap_mode="r")
        if vectors.ndim != 2 or vectors.dtype != np.float32:
            raise ConfigError(f"{path}: expected a 2-d float32 array, got {vectors.dtype} {vectors.shape}")
        n, dim = vectors.shape
        if dim % settings.m:
            raise ConfigError(f"{path}: dimension {dim} is not a multiple of m={settings.m}")
        rng = np.random.default_rng(settings.seed)
        sample = np.sort(rng.choice(n, size=min(settings.train_size, n), replace=False))
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(
            quantiser, dim, settings.nlist, settings.m, settings.nbits, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.seed = settings.seed
        index.train(np.ascontiguousarray(vectors[sample]))
        for start in range(0, n, settings.chunk):
            block = np.ascontiguousarray(vectors[start : start + settings.chunk])
            index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
        index.nprobe = settings.nprobe
        return cls(path, index, settings)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds in memory: codes and ids of the inverted lists, the centroids and
        the product quantiser's codebooks (the vectors stay on disk)."""
        invlists = self._index.invlists
        code_size = invlists.code_size
        entries = sum(invlists.list_size(i) for i in range(invlists.nlist))
        centroids = self._index.nlist * self._index.d * 4
        codebooks = self._index.pq.M * self._index.pq.ksub * self._index.pq.dsub * 4
        return entries * (code_size + 8) + centroids + codebooks

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the k best rows per query by exact inner product among the candidates."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, candidates = self._index.search(queries, max(k, self.settings.rerank))
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row, found in enumerate(candidates):
            found = np.unique(found[found >= 0])  # sorted: the file is read in order
            if not len(found):
                continue
            exact = self._vectors[found] @ queries[row]
            order = np.lexsort((found, -exact))[:k]
            ids[row, : len(order)], scores[row, : len(order)] = found[order], exact[order]
        return ids, scores
