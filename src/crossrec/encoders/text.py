"""Text encoders: all-MiniLM-L6-v2 (384-d sentence embeddings) and WordLlama (256-d static, a fast tier).

Item text is assembled from configured fields ("title: ... . genres: ..."), so the same catalog can be
encoded from titles only or from titles, tags and overviews, and the cache key follows the text itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from crossrec.data.schema import ItemContent
from crossrec.encoders.adapter import adapter_digest, merge_adapter
from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.fast import Backend, Precision, export_onnx, quantize_int8
from crossrec.encoders.registry import ResolvedModel, require_code
from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def item_texts(content: ItemContent, fields: Sequence[str]) -> list[str | None]:
    """One text per item from `fields`, "field: value" joined by ". "; None when every field is empty."""
    missing = [f for f in fields if f not in content.text]
    if missing:
        available = ", ".join(sorted(content.text)) or "none"
        raise ConfigError(f"text fields {missing} are not in the dataset (it has: {available})")
    if not fields:
        raise ConfigError("encoders.text.fields is empty: name at least one text field")
    columns = [content.text[f] for f in fields]
    texts: list[str | None] = []
    for values in zip(*columns, strict=True):
        parts = [f"{name}: {clean_text(v)}" for name, v in zip(fields, values, strict=True) if clean_text(v)]
        texts.append(". ".join(parts) or None)
    return texts


def clean_text(value: Any) -> str:
    """Collapse whitespace and drop control characters; anything that is not a string counts as empty."""
    if not isinstance(value, str):
        return ""
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()


class _TextEncoder(Encoder):
    modality: ClassVar[str] = "text"

    def load(self, raw: Any) -> Loaded:
        text = clean_text(raw)
        if not text:
            raise BadInput("empty text (no configured field has a value)")
        return Loaded(text)


class MiniLMEncoder(_TextEncoder):
    """all-MiniLM-L6-v2 through sentence-transformers: unit-length 384-d vectors, 256 word pieces max.

    With `adapter`, a LoRA adapter (encoders/adapter.py; trained by `crossrec.align.lora`) is merged into
    the weights first. Both backends run length-sorted micro-batches, so short texts are not padded to
    the longest one of a batch; the onnx backend runs the same network with mean pooling and
    normalisation inside the graph. int8 quantises every MatMul but the feed-forward outputs, whose
    activation outliers int8 cannot hold.
    """

    onnx_precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    micro_batch: ClassVar[int] = 16

    def __init__(
        self,
        model: ResolvedModel,
        *,
        max_seq_length: int = 256,
        backend: Backend = "torch",
        precision: Precision = "fp32",
        artifact_dir: str | Path | None = None,
        adapter: str | Path | None = None,
    ) -> None:
        require_code(model.spec)
        settings: dict[str, Any] = {"max_seq_length": max_seq_length}
        if adapter is not None:  # a LoRA adapter's digest keys the cache
            settings["adapter"] = adapter_digest(adapter, model)
        super().__init__(model, settings, backend=backend, precision=precision)
        self._st = load_sentence_transformer(model)
        if adapter is not None:
            self._st[0].auto_model = merge_adapter(self._st[0].auto_model, adapter)
        self.max_seq_length = max_seq_length
        dimension = (
            getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        )
        self.outputs = {MAIN_OUTPUT: int(dimension() or 384)}
        self._onnx = self._onnx_model(
            artifact_dir, self._export_int8 if precision == "int8" else self._export
        )

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        tokenizer = self._st.tokenizer
        ids = tokenizer([item.data for item in batch], truncation=True, max_length=self.max_seq_length)
        ids = ids["input_ids"]
        order = np.argsort([len(row) for row in ids], kind="stable")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.micro_batch):
            rows = order[start : start + self.micro_batch]
            width = max(len(ids[r]) for r in rows)
            input_ids = np.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, r in enumerate(rows):
                input_ids[i, : len(ids[r])] = ids[r]
                mask[i, : len(ids[r])] = 1
            out[rows] = self._network(input_ids, mask)
        return {MAIN_OUTPUT: out}

    def _network(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.run({"input_ids": input_ids, "attention_mask": mask})[0]
        features = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        with torch.inference_mode():
            return self._st(features)["sentence_embedding"].numpy()

    def _export(self, path: Path) -> None:
        example = self._st.tokenizer(
            ["a short text", "a somewhat longer text to pad"], padding=True, return_tensors="pt"
        )
        export_onnx(
            _MeanPooled(self._st[0].auto_model),
            (example["input_ids"], example["attention_mask"]),
            path,
            inputs={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            outputs={MAIN_OUTPUT: {0: "batch"}},
        )

    def _export_int8(self, path: Path) -> None:
        quantize_int8(
            self._export, path, exclude=lambda node: "/output/dense/" in node and "attention" not in node
        )


class _MeanPooled(torch.nn.Module):
    """The BERT body with sentence-transformers' mean pooling and normalisation, as one graph."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)


def load_sentence_transformer(model: ResolvedModel) -> SentenceTransformer:
    """MiniLM's sentence-transformers pipeline (BERT, mean pooling, normalisation) from its verified local
    folder, offline and in eval mode, without transformers' per-load progress bar."""
    from sentence_transformers import SentenceTransformer

    with _quiet_transformers():
        return SentenceTransformer(str(model.weights.parent), device="cpu", local_files_only=True).eval()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bar (it would interleave with ours), then restore it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class WordLlamaEncoder(_TextEncoder):
    """WordLlama's static token embeddings (from Llama 2), mean-pooled and normalised as `embed(norm=True)`
    does; loaded directly from the verified files so no download path or logging set-up runs."""

    def __init__(self, model: ResolvedModel) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        super().__init__(model)
        with safe_open(str(model.weights), framework="np", device="cpu") as fh:
            self._table = np.ascontiguousarray(fh.get_tensor("embedding.weight"), dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(model.paths["tokenizer"]))
        self._tokenizer.enable_padding()
        self._tokenizer.no_truncation()
        self.outputs = {MAIN_OUTPUT: self._table.shape[1]}

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        encoded = self._tokenizer.encode_batch([item.data for item in batch], add_special_tokens=False)
        ids = np.clip(np.array([e.ids for e in encoded], dtype=np.int64), 0, len(self._table) - 1)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        summed = np.einsum("bt,btd->bd", mask, self._table[ids], dtype=np.float32)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return {MAIN_OUTPUT: (pooled / np.maximum(norms, 1e-12)).astype(np.float32)}
