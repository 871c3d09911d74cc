"""The LoRA adapter artifact of the MiniLM text encoder: its files, its manifest and how it is applied.

An adapter folder holds peft's `adapter_model.safetensors` and `adapter_config.json` plus `lora.json`, a
manifest with the base weights' sha256 and each file's sha256. The encoder stage reads, verifies and
merges adapters here; training them is the align stage's job (`crossrec.align.lora`), which writes the
folder with `seal_adapter`, so the format is written and read in one place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from crossrec.encoders.registry import ModelFileError, ResolvedModel, sha256_file

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
MANIFEST = "lora.json"


def seal_adapter(directory: Path, model: ResolvedModel, facts: dict[str, Any]) -> None:
    """Turn the folder peft's `save_pretrained` wrote into a shareable artifact: drop peft's model card
    (it carries local paths), name the base model by id rather than by folder, sort `target_modules`
    (peft writes a set, in an order that changes with PYTHONHASHSEED, and the digest hashes these
    bytes), and write the manifest (`facts` about the training, then the sha256 of every adapter file)."""
    (directory / "README.md").unlink(missing_ok=True)
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = model.spec.hub_id or model.spec.name
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "base_model": model.spec.name,
        "base_weights_sha256": model.spec.weights_sha256,
        **facts,
        "files": {name: sha256_file(directory / name) for name in ADAPTER_FILES},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def adapter_digest(directory: str | Path, model: ResolvedModel) -> str:
    """The adapter's identity for fingerprints, after checking its files against its manifest and that
    it was trained on `model`'s weights; raises ModelFileError naming the problem otherwise."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        base = manifest["base_weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"LoRA adapter {directory}: unreadable {MANIFEST} ({exc})") from exc
    if base != model.spec.weights_sha256:
        raise ModelFileError(
            f"LoRA adapter {directory} was trained on weights {str(base)[:16]}..., not on "
            f"{model.spec.name} ({model.spec.weights_sha256[:16]}...)"
        )
    for name in ADAPTER_FILES:
        path = directory / name
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != files.get(name):
            raise ModelFileError(
                f"LoRA adapter {path}: sha256 {actual[:16]} does not match {MANIFEST}; retrain or re-copy it"
            )
    return hashlib.sha256("".join(files[name] for name in ADAPTER_FILES).encode()).hexdigest()[:16]


def merge_adapter(bert: torch.nn.Module, directory: str | Path) -> torch.nn.Module:
    """`bert` with the (verified) adapter's low-rank updates merged into its weights: a plain BertModel
    again, so the torch and ONNX paths run it unchanged and as fast as the frozen one."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(bert, str(directory), is_trainable=False).merge_and_unload()
    return merged.eval()
