"""The encoder contract: `modality`, `dim`, `fingerprint`, `encode(batch) -> float32`.

Encoding is split in two steps so one broken input never costs a batch: `load` decodes and checks one
raw input (text, image path, audio path) and raises `BadInput` with a reason for the ingest report;
`encode_loaded` runs the network on a batch of inputs that loaded. `encode` chains them for callers that
want the plain contract.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crossrec.encoders.fast import Backend, OnnxModel, Precision, check_path, model_cache_dir, path_settings
from crossrec.encoders.registry import ResolvedModel

MAIN_OUTPUT = "embedding"


class BadInput(Exception):
    """One raw input that cannot be encoded; `reason` goes into the ingest report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Loaded:
    """A decoded input ready for the network, with notes on what was repaired on the way."""

    data: Any
    notes: list[str] = field(default_factory=list)


class Encoder(ABC):
    """A frozen pretrained model over one modality. Subclasses set `modality` and `outputs`."""

    modality: ClassVar[str]
    onnx_precisions: ClassVar[tuple[str, ...]] = ()  # what its ONNX path offers; () when it has none
    outputs: dict[str, int]  # output name -> width; MAIN_OUTPUT is the embedding, others ride along

    def __init__(
        self,
        model: ResolvedModel,
        settings: dict[str, Any] | None = None,
        *,
        backend: Backend = "torch",
        precision: Precision = "fp32",
    ) -> None:
        check_path(model.spec.name, backend, precision, self.onnx_precisions)
        self.model = model
        self.backend, self.precision = backend, precision
        self.settings = {**(settings or {}), **path_settings(backend, precision)}

    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def dim(self) -> int:
        return self.outputs[MAIN_OUTPUT]

    @property
    def fingerprint(self) -> str:
        """Model id + weights sha256 + the settings that change outputs: a cache key that goes stale
        exactly when the vectors would change."""
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}-{self.model.spec.weights_sha256[:16]}-{digest}"

    def _onnx_model(
        self, artifact_dir: str | Path | None, export: Callable[[Path], None]
    ) -> OnnxModel | None:
        """The verified ONNX graph when the backend is onnx (exported by `export` on first use)."""
        if self.backend != "onnx":
            return None
        return OnnxModel(Path(artifact_dir or model_cache_dir()) / self.fingerprint, export)

    @abstractmethod
    def load(self, raw: Any) -> Loaded:
        """Decode and check one raw input; raise BadInput(reason) when it cannot be used."""

    @abstractmethod
    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        """Every output for a batch of loaded inputs, float32, one row per input."""

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """The main embedding of raw inputs; a bad one raises BadInput naming its position."""
        loaded = []
        for i, raw in enumerate(batch):
            try:
                loaded.append(self.load(raw))
            except BadInput as exc:
                raise BadInput(f"input {i} ({raw!r}): {exc.reason}") from exc
        if not loaded:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_loaded(loaded)[MAIN_OUTPUT]
