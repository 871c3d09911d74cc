"""The LoRA adapter artifact as the encoder stage sees it: sealing, verification, merging, config.

Uses the adapter shipped in the repository (artifacts/lora-minilm-movielens), so these tests need no
training; tests/align/test_lora.py trains one and checks that it reloads into the tuned vectors.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import crossrec.encoders
from crossrec.encoders.adapter import ADAPTER_FILES, MANIFEST, adapter_digest, seal_adapter
from crossrec.encoders.modalities import TextEncoderConfig, build_encoder
from crossrec.encoders.registry import ModelFileError, resolve
from crossrec.encoders.text import MiniLMEncoder
from crossrec.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "artifacts" / "lora-minilm-movielens"
TEXTS = ["title: Toy Story (1995). genres: Adventure|Animation", "title: Heat (1995). genres: Action|Crime"]


@pytest.fixture(scope="module")
def minilm_model():
    return resolve("all-MiniLM-L6-v2")


def test_seal_then_verify_round_trip(tmp_path: Path, minilm_model) -> None:
    (tmp_path / "README.md").write_text("model card with /home/someone/paths")
    config = {"r": 4, "base_model_name_or_path": "/local", "target_modules": ["value", "query"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    seal_adapter(tmp_path, minilm_model, {"params": {"r": 4}, "pairs": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*ADAPTER_FILES, MANIFEST])
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["target_modules"] == ["query", "value"]  # peft's set order varies with the hash seed
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert list(manifest) == ["base_model", "base_weights_sha256", "params", "pairs", "files"]
    digest = adapter_digest(tmp_path, minilm_model)
    assert len(digest) == 16
    (tmp_path / "adapter_model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ModelFileError, match="does not match"):
        adapter_digest(tmp_path, minilm_model)


def test_adapter_for_other_weights_or_without_manifest_is_refused(tmp_path: Path, minilm_model) -> None:
    copy = Path(shutil.copytree(SHIPPED, tmp_path / "copy"))
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "base_weights_sha256": "0" * 64}))
    with pytest.raises(ModelFileError, match="trained on weights 0000"):
        adapter_digest(copy, minilm_model)
    (copy / MANIFEST).unlink()
    with pytest.raises(ModelFileError, match="unreadable"):
        adapter_digest(copy, minilm_model)


def test_damaged_adapter_is_refused(tmp_path: Path, minilm_model) -> None:
    copy = Path(shutil.copytree(SHIPPED, tmp_path / "copy"))
    with open(copy / "adapter_model.safetensors", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelFileError, match="does not match"):
        MiniLMEncoder(minilm_model, adapter=copy)


def test_shipped_adapter_merges_and_keys_the_cache(minilm: MiniLMEncoder, minilm_model) -> None:
    tuned = build_encoder("text", TextEncoderConfig(backend="torch", adapter=str(SHIPPED)))
    assert tuned.settings["adapter"] == adapter_digest(SHIPPED, minilm_model)
    assert tuned.fingerprint != minilm.fingerprint and "adapter" not in minilm.settings
    vectors = tuned.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - minilm.encode(TEXTS)).max() > 1e-2  # the merged update moves the vectors
    with pytest.raises(ConfigError, match="adapter"):
        build_encoder("text", TextEncoderConfig(model="wordllama", backend="torch", adapter=str(SHIPPED)))


def test_no_encoders_module_imports_a_later_stage() -> None:
    """The adapter format lives here so that the encoders never import align (which trains adapters)."""
    later = ("crossrec.align", "crossrec.models", "crossrec.eval", "crossrec.report")
    package = Path(crossrec.encoders.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not [n for n in names if n.startswith(later)], f"{path.name} imports {names}"
