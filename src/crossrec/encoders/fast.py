"""The fast inference path: an encoder's network exported to ONNX once and run with ONNX Runtime.

The exported graph is an artifact like an embedding shard: written atomically into a folder named by the
encoder's fingerprint (which names the backend, precision and export recipe, so vectors of different
paths never share a cache entry), next to a manifest holding its sha256. A graph that no longer matches
its manifest is rebuilt, never run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from crossrec.encoders.registry import ModelFileError, sha256_file
from crossrec.errors import ConfigError
from crossrec.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]
Precision = Literal["fp32", "int8"]

EXPORT_RECIPE = 1  # bump when an export changes the vectors: it is part of the fingerprint
OPSET = 17
MODEL_FILE, MANIFEST_FILE = "model.onnx", "manifest.json"


def path_settings(backend: Backend, precision: Precision) -> dict[str, Any]:
    """The fingerprint settings of an inference path; empty for plain torch fp32, so caches built before
    fast paths existed stay valid."""
    if (backend, precision) == ("torch", "fp32"):
        return {}
    return {"backend": backend, "precision": precision, "export": EXPORT_RECIPE}


def check_path(model: str, backend: Backend, precision: Precision, onnx_precisions: Sequence[str]) -> None:
    """Reject a backend/precision pair the encoder cannot run, naming what it can."""
    if backend == "torch" and precision != "fp32":
        raise ConfigError(f"{model}: precision {precision} needs backend onnx (the torch path is fp32)")
    if backend == "onnx" and precision not in onnx_precisions:
        offered = ", ".join(onnx_precisions) or "none (use backend torch)"
        raise ConfigError(f"{model}: no onnx {precision} path; onnx precisions offered: {offered}")


def model_cache_dir() -> Path:
    """Where exported graphs live: $CROSSREC_MODEL_CACHE, else the user cache (shared by every run)."""
    if env := os.environ.get("CROSSREC_MODEL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossrec" / "models"


def require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelFileError(
            "backend onnx needs onnxruntime and onnx: run `pip install onnxruntime onnx`, "
            "or set backend: torch"
        ) from None


class OnnxModel:
    """An exported graph, verified (or rebuilt) at load, with one ORT session per thread count so the
    `threads` setting of a run applies to it as it does to torch."""

    def __init__(self, folder: Path, export: Callable[[Path], None]) -> None:
        require_onnxruntime()
        self.folder = folder
        self.path = folder / MODEL_FILE
        self.rebuilt = self._problem()  # why the graph was (re)built on this load; None when reused
        if self.rebuilt is not None:
            if self.path.exists():
                log.warning("rebuilding %s: %s", self.path, self.rebuilt)
            self._build(export)
        self._sessions: dict[int, Any] = {}

    def _problem(self) -> str | None:
        manifest = self.folder / MANIFEST_FILE
        if not self.path.is_file() or not manifest.is_file():
            return "not exported yet"
        try:
            expected = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return "unreadable manifest"
        actual = sha256_file(self.path)
        if actual != expected:
            return f"sha256 {actual[:16]}... does not match its manifest ({str(expected)[:16]}...)"
        return None

    def _build(self, export: Callable[[Path], None]) -> None:
        (self.folder / MANIFEST_FILE).unlink(missing_ok=True)  # a half-replaced pair must not verify
        with atomic_path(self.path) as tmp:
            export(tmp)
        write_json_atomic(
            self.folder / MANIFEST_FILE,
            {"sha256": sha256_file(self.path), "torch": torch.__version__, "opset": OPSET},
        )

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        threads = torch.get_num_threads()
        if threads not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[threads] = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[threads].run(None, feeds)


def export_onnx(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    inputs: dict[str, dict[int, str]],
    outputs: dict[str, dict[int, str]],
) -> None:
    """torch.onnx's TorchScript exporter (it needs only the `onnx` package, and handles these models
    exactly); `inputs` / `outputs` map names to their dynamic axes."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            dynamo=False,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={**inputs, **outputs},
            opset_version=OPSET,
        )


def quantize_int8(module_export: Callable[[Path], None], path: Path, exclude: Callable[[str], bool]) -> None:
    """Dynamic int8 (per-channel weights, activations quantised at run time) of every MatMul except the
    nodes `exclude` names: the layers whose activations have outliers int8 cannot hold."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="crossrec-onnx-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        module_export(fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        names = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "MatMul"]
        excluded = [name for name in names if exclude(name)]
        if not excluded:
            raise RuntimeError(f"int8 export of {path.name}: no MatMul matched the exclusion rule")
        quantize_dynamic(
            str(prepared),
            str(path),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=excluded,
        )
