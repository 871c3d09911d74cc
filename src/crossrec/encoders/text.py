"""Text encoders: all-MiniLM-L6-v2 (384-d sentence embeddings) and WordLlama (256-d static, a fast tier).

Item text is assembled from configured fields ("title: ... . genres: ..."), so the same catalog can be
encoded from titles only or from titles, tags and overviews, and the cache key follows the text itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from crossrec.data.schema import ItemContent
from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.registry import ResolvedModel, require_code
from crossrec.errors import ConfigError

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
    """all-MiniLM-L6-v2 through sentence-transformers: unit-length 384-d vectors, 256 word pieces max."""

    def __init__(self, model: ResolvedModel, *, max_seq_length: int = 256) -> None:
        require_code(model.spec)
        from sentence_transformers import SentenceTransformer

        super().__init__(model, {"max_seq_length": max_seq_length})
        with _quiet_transformers():
            self._st = SentenceTransformer(str(model.weights.parent), device="cpu", local_files_only=True)
        self._st.max_seq_length = max_seq_length
        dimension = (
            getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        )
        self.outputs = {MAIN_OUTPUT: int(dimension() or 384)}

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        vectors = self._st.encode(
            [item.data for item in batch],
            batch_size=len(batch),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return {MAIN_OUTPUT: np.asarray(vectors, dtype=np.float32)}


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
