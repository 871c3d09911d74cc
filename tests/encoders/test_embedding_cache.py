"""The embedding cache on its own: durable shards, reopening, merging, damaged shards set aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossrec.encoders.cache import EmbeddingCache, content_key

OUTPUTS = {"embedding": 4, "labels": 3}


def _vectors(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((n, dim)).astype(np.float32) for name, dim in OUTPUTS.items()}


def test_put_reopen_get_and_compact(tmp_path: Path) -> None:
    keys = [content_key(f"item {i}") for i in range(5)]
    cache = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    first, second = _vectors(3, 0), _vectors(2, 1)
    cache.put(keys[:3], first, {keys[1]: ["converted L to RGB"]})
    cache.put(keys[3:], second, {})
    assert len(list(cache.folder.glob("shard-*.npz"))) == 2 and len(cache) == 5

    reopened = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    got = reopened.get(keys)
    assert np.array_equal(got["embedding"], np.concatenate([first["embedding"], second["embedding"]]))
    assert reopened.notes == {keys[1]: ["converted L to RGB"]}

    reopened.compact()
    assert len(list(reopened.folder.glob("shard-*.npz"))) == 1
    merged = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    assert np.array_equal(merged.get(keys)["labels"], got["labels"])
    assert merged.notes == reopened.notes


def test_each_fingerprint_has_its_own_vectors(tmp_path: Path) -> None:
    key = content_key("same text")
    EmbeddingCache(tmp_path, "model-a", OUTPUTS).put([key], _vectors(1, 0), {})
    assert key not in EmbeddingCache(tmp_path, "model-b", OUTPUTS)
    assert key in EmbeddingCache(tmp_path, "model-a", OUTPUTS)


def test_damaged_shard_is_set_aside_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = [content_key("a"), content_key("b")]
    cache = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    good = cache.put(keys[:1], _vectors(1, 0), {})
    bad = cache.put(keys[1:], _vectors(1, 1), {})
    bad.write_bytes(bad.read_bytes()[:100])
    reopened = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    assert "setting aside unreadable shard" in caplog.text
    assert keys[0] in reopened and keys[1] not in reopened
    assert good.exists() and not bad.exists() and bad.with_name(bad.name + ".bad").exists()


def test_refuses_wrong_shapes_and_non_finite_vectors(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "model-abc", OUTPUTS)
    with pytest.raises(ValueError, match="shape"):
        cache.put(["k"], _vectors(2, 0), {})
    vectors = _vectors(1, 0)
    vectors["labels"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cache.put(["k"], vectors, {})
    assert len(cache) == 0 and not list(cache.folder.iterdir())


# A real process putting shards in a loop. At batch `stall_at` it stops inside the write, at the
# point `where` names, and says so; the test then kills it with SIGKILL, so nothing of the write
# (no `finally`, no clean-up) runs past that point.
_WRITER = """
import io, json, os, sys, time
import numpy as np
from crossrec.encoders.cache import EmbeddingCache, content_key

root, where, stall_at, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
outputs = json.loads(sys.argv[5])
batch = 0

def stall(message):
    print(message, flush=True)
    time.sleep(60)

real_savez, real_replace = np.savez, os.replace

def torn_savez(fh, **arrays):  # half the shard's bytes reach the disk, then the process dies
    if batch == stall_at and where == "mid-write":
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        data = buffer.getvalue()
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        stall("stalled")
    return real_savez(fh, **arrays)

def slow_replace(src, dst):  # the whole shard is written under its temporary name, not yet renamed
    if batch == stall_at and where == "before-rename":
        stall("stalled")
    return real_replace(src, dst)

np.savez, os.replace = torn_savez, slow_replace
cache = EmbeddingCache(root, "model-abc", outputs)
for batch in range(stall_at + 1):
    keys = [content_key(f"{batch}-{row}") for row in range(rows)]
    values = np.arange(batch * rows, (batch + 1) * rows, dtype=np.float32)[:, None]
    vectors = {name: values + np.arange(dim, dtype=np.float32) / dim for name, dim in outputs.items()}
    cache.put(keys, vectors, {keys[0]: [f"batch {batch}"]})
    print(batch, flush=True)
"""

KILLED_OUTPUTS = {"embedding": 512, "labels": 64}


def _batch(batch: int, rows: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """What the writer puts as batch `batch`: row r holds batch * rows + r + column / dim."""
    keys = [content_key(f"{batch}-{row}") for row in range(rows)]
    values = np.arange(batch * rows, (batch + 1) * rows, dtype=np.float32)[:, None]
    vectors = {name: values + np.arange(dim, dtype=np.float32) / dim for name, dim in KILLED_OUTPUTS.items()}
    return keys, vectors


@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_kill_9_during_a_shard_write_leaves_whole_shards_only(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    import crossrec

    rows, stall_at = 200, 4
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(crossrec.__file__).parents[1])}
    args = [str(tmp_path / "cache"), where, str(stall_at), str(rows), json.dumps(KILLED_OUTPUTS)]
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:  # "0", "1", ... once each batch is cached, then "stalled"
            if line.strip() == "stalled":
                break
            printed.append(line.strip())
    finally:
        proc.kill()  # SIGKILL, once the writer stalled inside batch `stall_at`'s write (or died)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert printed == [str(b) for b in range(stall_at)]
    folder = tmp_path / "cache" / "model-abc"
    assert len(list(folder.glob("shard-*.npz"))) == stall_at
    leftovers = [p for p in folder.iterdir() if not p.name.startswith("shard-")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".shard-")  # the torn temporary file

    reopened = EmbeddingCache(tmp_path / "cache", "model-abc", KILLED_OUTPUTS)
    assert "setting aside" not in caplog.text  # no torn shard was ever a candidate
    assert len(reopened) == stall_at * rows
    for batch in range(stall_at):
        keys, vectors = _batch(batch, rows)
        got = reopened.get(keys)
        for name in KILLED_OUTPUTS:
            assert np.array_equal(got[name], vectors[name]), (batch, name)
        assert reopened.notes[keys[0]] == [f"batch {batch}"]
    lost, _ = _batch(stall_at, rows)
    assert not any(key in reopened for key in lost)

    for batch in (stall_at, stall_at + 1):  # the run resumes where it stopped, then merges
        reopened.put(*_batch(batch, rows), {})
    reopened.compact()
    merged = EmbeddingCache(tmp_path / "cache", "model-abc", KILLED_OUTPUTS)
    assert len(list(merged.folder.glob("shard-*.npz"))) == 1 and len(merged) == (stall_at + 2) * rows
    for batch in range(stall_at + 2):
        keys, vectors = _batch(batch, rows)
        assert np.array_equal(merged.get(keys)["embedding"], vectors["embedding"]), batch
