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
