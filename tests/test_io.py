"""Atomic writes: a writer that fails leaves the old file as it was and nothing else behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossrec.io import atomic_path, write_atomic, write_json_atomic, write_text_atomic


def _half_then_fail(path: Path) -> None:
    path.write_text('{"new": ', encoding="utf-8")  # a torn file, as a crash mid-write leaves it
    raise RuntimeError("disk full")


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"old": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, _half_then_fail)
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failing_block_leaves_no_file_where_there_was_none(tmp_path: Path) -> None:
    target = tmp_path / "deeper" / "split.npz"
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        _half_then_fail(tmp)
    assert list(target.parent.iterdir()) == []


def test_success_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_text_atomic(target, "old")
    seen: list[str] = []

    def writer(tmp: Path) -> None:
        tmp.write_text("new")
        seen.append(target.read_text())  # until the rename, readers still see the old file

    assert write_atomic(target, writer) == target
    assert seen == ["old"] and target.read_text() == "new"
    write_json_atomic(tmp_path / "v.json", {"x": np.float32(0.5), "n": np.int64(3), "a": np.arange(2)})
    assert json.loads((tmp_path / "v.json").read_text()) == {"x": 0.5, "n": 3, "a": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "v.json"]
