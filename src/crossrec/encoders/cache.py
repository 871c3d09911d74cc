"""Embedding cache: vectors keyed by content hash, one folder per encoder fingerprint.

Each encoded batch is written as its own shard (temp file + rename), so a run killed at any instant
leaves whole shards only and the next run starts where it stopped. Shards are merged into one at the end
of a run; a merge cut short leaves duplicate rows with identical vectors, which loading tolerates.
A shard that fails to read (a damaged disk, a foreign file) is set aside, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossrec.io import atomic_path

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def content_key(data: bytes | str) -> str:
    """sha256 of the raw content: text as UTF-8, files as their bytes."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def file_key(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingCache:
    """Vectors of one encoder (`fingerprint`) with named outputs of fixed widths."""

    def __init__(self, root: str | Path, fingerprint: str, outputs: dict[str, int]) -> None:
        self.fingerprint = fingerprint
        self.outputs = dict(outputs)
        self.folder = Path(root) / _UNSAFE.sub("_", fingerprint)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[int, int]] = {}  # key -> (block, row)
        self._blocks: list[dict[str, np.ndarray]] = []
        self.notes: dict[str, list[str]] = {}
        self._shards: list[Path] = []
        self._counter = 0
        for shard in sorted(self.folder.glob("shard-*.npz")):
            self._read(shard)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Each output for `keys` (all must be cached), stacked in their order."""
        out = {name: np.empty((len(keys), dim), dtype=np.float32) for name, dim in self.outputs.items()}
        for i, key in enumerate(keys):
            block, row = self._index[key]
            for name in self.outputs:
                out[name][i] = self._blocks[block][name][row]
        return out

    def put(self, keys: Sequence[str], vectors: dict[str, np.ndarray], notes: dict[str, list[str]]) -> Path:
        """Store one batch durably as a new shard; only then does it count as cached."""
        self._check(keys, vectors)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{self._counter:06d}.npz"
        self._counter += 1
        path = self.folder / name
        self._write(path, list(keys), vectors, notes)
        self._add(
            path, np.asarray(keys), {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}, notes
        )
        return path

    def compact(self) -> None:
        """Merge every shard into one: fewer files to read next time. Safe to interrupt at any point."""
        if len(self._shards) < 2:
            return
        keys = list(self._index)
        merged = self.get(keys)
        notes = {k: v for k, v in self.notes.items() if k in self._index}
        old = list(self._shards)
        path = self.folder / f"shard-{time.time_ns():020d}-{os.getpid()}-merged.npz"
        self._write(path, keys, merged, notes)
        for shard in old:
            shard.unlink(missing_ok=True)
        self._shards = [path]
        self._blocks = [merged]
        self._index = {key: (0, row) for row, key in enumerate(keys)}

    def _check(self, keys: Sequence[str], vectors: dict[str, np.ndarray]) -> None:
        if set(vectors) != set(self.outputs):
            raise ValueError(f"expected outputs {sorted(self.outputs)}, got {sorted(vectors)}")
        for name, dim in self.outputs.items():
            if vectors[name].shape != (len(keys), dim):
                raise ValueError(
                    f"output {name!r} has shape {vectors[name].shape}, expected ({len(keys)}, {dim})"
                )
            if not np.isfinite(vectors[name]).all():
                raise ValueError(f"output {name!r} contains NaN or infinity; refusing to cache it")

    def _write(
        self, path: Path, keys: list[str], vectors: dict[str, np.ndarray], notes: dict[str, list[str]]
    ) -> None:
        meta = {"fingerprint": self.fingerprint, "outputs": self.outputs, "notes": notes}
        arrays = {f"out_{name}": np.asarray(vectors[name], dtype=np.float32) for name in self.outputs}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys, dtype="U64"), meta=np.asarray(json.dumps(meta)), **arrays)

    def _read(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                keys = z["keys"]
                vectors = {name: z[f"out_{name}"] for name in self.outputs}
            if meta.get("fingerprint") != self.fingerprint or meta.get("outputs") != self.outputs:
                raise ValueError("written by a different encoder")
            self._check(list(keys), vectors)
        except Exception as exc:  # any unreadable shard is set aside, whatever the reason
            aside = path.with_name(path.name + ".bad")
            log.warning("embedding cache: setting aside unreadable shard %s (%s)", path, exc)
            os.replace(path, aside)
            return
        self._add(path, keys, vectors, meta.get("notes", {}))

    def _add(
        self, path: Path, keys: np.ndarray, vectors: dict[str, np.ndarray], notes: dict[str, list[str]]
    ) -> None:
        block = len(self._blocks)
        self._blocks.append(vectors)
        self._shards.append(path)
        for row, key in enumerate(keys.tolist()):
            self._index[key] = (block, row)
        self.notes.update(notes)
