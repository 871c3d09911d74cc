"""`encode_dataset`: every configured modality of a dataset into the cache and back as item matrices.

Items are visited in index order; only content the cache lacks is decoded and encoded, in batches of
consecutive pending items. That order makes a resumed run form exactly the batches the interrupted one
would have, so its vectors are bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crossrec.data.schema import Dataset
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.cache import EmbeddingCache, content_key, file_key
from crossrec.encoders.fast import Backend, Precision, check_path
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.ingest import IngestIssue, IngestReport, ModalityCounts
from crossrec.encoders.registry import get_spec, resolve
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder, item_texts
from crossrec.errors import ConfigError
from crossrec.registry import Registry

BatchHook = Callable[[str, int, int], None]  # (modality, items done, items pending in this run)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PathConfig(_Strict):
    """How the network runs. onnx fp32 is the default: the same vectors as torch (cosine 1.0 to 1e-6),
    2.8-5.6x the torch speed for images and 1.2-2.7x for audio, but a median 0.54x for MiniLM text on
    2 shared cores (docs/encoders.md); int8 (MiniLM only) trades cosine ~0.996 for speed. The backend is
    part of the encoder fingerprint, so switching it re-encodes rather than mixing vectors."""

    backend: Backend = "onnx"
    precision: Precision = "fp32"


class TextEncoderConfig(_PathConfig):
    model: str = "all-MiniLM-L6-v2"
    path: str | None = None  # explicit local weights: wins over the installed package
    fields: list[str] | None = None  # None: every text field of the dataset, in its order
    batch_size: int = Field(64, ge=1)
    adapter: str | None = None  # a LoRA adapter folder (align/lora.py trains it), MiniLM only


class ImageEncoderConfig(_PathConfig):
    model: str = "efficientnet-lite0"
    path: str | None = None
    batch_size: int = Field(16, ge=1)
    max_pixels: int | None = Field(None, ge=1)  # None: PIL's decompression-bomb limit
    labels: bool = True  # also return ImageNet label probabilities as "image_labels"


class AudioEncoderConfig(_PathConfig):
    model: str = "aisfx"
    path: str | None = None
    batch_size: int = Field(8, ge=1)
    pooling: Literal["mean", "max"] = "mean"
    max_seconds: float = Field(600.0, gt=0)


class EncodersConfig(_Strict):
    """Which encoder runs on which modality; a modality set to null is not encoded."""

    text: TextEncoderConfig | None = Field(default_factory=TextEncoderConfig)
    image: ImageEncoderConfig | None = Field(default_factory=ImageEncoderConfig)
    audio: AudioEncoderConfig | None = Field(default_factory=AudioEncoderConfig)
    allow_download: bool = False  # fall back to the hub when neither a path nor the package has weights


ModalityConfig = TextEncoderConfig | ImageEncoderConfig | AudioEncoderConfig

# Encoder classes by the registry name of the weights they run (encoders/registry.py pins the files).
ENCODERS: Registry[type[Encoder]] = Registry("encoder")
ENCODERS.register("all-MiniLM-L6-v2", MiniLMEncoder)
ENCODERS.register("wordllama-l2-supercat-256", WordLlamaEncoder)
ENCODERS.register("efficientnet-lite0", EfficientNetLiteEncoder)
ENCODERS.register("aisfx", AisfxEncoder)


class EncodeResult(NamedTuple):
    """`vectors[name]`: (n_items, d) float32, zero rows where `present[name]` is False (no input, or
    skipped: see `report`). Names: the modality for its embedding, "<modality>_<output>" for extras."""

    vectors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    report: IngestReport


def parse_config(config: EncodersConfig | Mapping[str, Any] | None) -> EncodersConfig:
    if isinstance(config, EncodersConfig):
        return config
    try:
        return EncodersConfig.model_validate(dict(config or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid encoders config: {exc}") from exc


def build_encoder(
    modality: str,
    config: ModalityConfig,
    *,
    allow_download: bool = False,
    artifact_dir: str | Path | None = None,
) -> Encoder:
    """The encoder a modality's config names, with weights resolved and verified; an onnx backend's graph
    is exported into `artifact_dir` (default: fast.model_cache_dir()) on first use."""
    try:
        spec = get_spec(config.model)
    except Exception as exc:
        raise ConfigError(f"encoders.{modality}.model: {exc}") from exc
    cls = ENCODERS[spec.name]
    if cls.modality != modality:
        raise ConfigError(f"encoders.{modality}.model: {spec.name} encodes {cls.modality}, not {modality}")
    if getattr(config, "adapter", None) is not None and cls is not MiniLMEncoder:
        raise ConfigError(f"encoders.{modality}.adapter: LoRA adapters apply to MiniLM, not {spec.name}")
    if not cls.onnx_precisions:  # WordLlama: a numpy table lookup, no network for a backend to run
        if config.precision != "fp32":
            raise ConfigError(f"encoders.{modality}.precision: {spec.name} has no network to quantise")
        return cls(resolve(spec.name, config.path, allow_download=allow_download))  # type: ignore[call-arg]
    check_path(f"encoders.{modality} ({spec.name})", config.backend, config.precision, cls.onnx_precisions)
    model = resolve(spec.name, config.path, allow_download=allow_download)
    path = {"backend": config.backend, "precision": config.precision, "artifact_dir": artifact_dir}
    if isinstance(config, ImageEncoderConfig):
        return EfficientNetLiteEncoder(model, variant=spec.name, max_pixels=config.max_pixels, **path)
    if isinstance(config, AudioEncoderConfig):
        return AisfxEncoder(model, pooling=config.pooling, max_seconds=config.max_seconds, **path)
    return MiniLMEncoder(model, adapter=config.adapter, **path)


def encode_dataset(
    dataset: Dataset,
    encoders_config: EncodersConfig | Mapping[str, Any] | None,
    cache_dir: str | Path,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_batch: BatchHook | None = None,
) -> EncodeResult:
    """Encode every configured modality the dataset has; cached content is not encoded again.

    `encoders` supplies ready encoders by modality (reused across calls; otherwise built from the
    config). `on_batch(modality, done, pending)` runs after each batch is safely cached: a hook for
    progress reporting and benchmarks.
    """
    config = parse_config(encoders_config)
    report = IngestReport()
    vectors: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    inputs = _modality_inputs(dataset, config, report)
    with _torch_threads(threads), _progress(progress) as bar:
        for modality, (modality_config, raws, sources) in inputs.items():
            encoder = (encoders or {}).get(modality) or build_encoder(
                modality, modality_config, allow_download=config.allow_download
            )
            run = _ModalityRun(modality, encoder, modality_config.batch_size, dataset, report, bar, on_batch)
            cache = EmbeddingCache(Path(cache_dir) / modality, encoder.fingerprint, encoder.outputs)
            outputs, mask = run.encode(raws, sources, cache)
            for output, matrix in outputs.items():
                if output == MAIN_OUTPUT:
                    name = modality
                elif isinstance(modality_config, ImageEncoderConfig) and not modality_config.labels:
                    continue
                else:
                    name = f"{modality}_{output}"
                vectors[name], present[name] = matrix, mask
    return EncodeResult(vectors, present, report)


def _modality_inputs(
    dataset: Dataset, config: EncodersConfig, report: IngestReport
) -> dict[str, tuple[ModalityConfig, list[str | None], list[str]]]:
    """Per configured modality the dataset has: its config, one raw input per item, and their sources."""
    content = dataset.content
    found: dict[str, tuple[ModalityConfig, list[str | None], list[str]]] = {}
    if config.text is not None:
        if content.text:
            fields = config.text.fields if config.text.fields is not None else list(content.text)
            texts = item_texts(content, fields)
            found["text"] = (config.text, texts, [f"text fields {', '.join(fields)}"] * len(texts))
        else:
            report.not_in_dataset.append("text")
    for modality, paths in (("image", content.image), ("audio", content.audio)):
        modality_config = getattr(config, modality)
        if modality_config is None:
            continue
        if paths is None or all(p is None for p in paths):
            report.not_in_dataset.append(modality)
        else:
            found[modality] = (modality_config, list(paths), [str(p) for p in paths])
    return found


@dataclass
class _ModalityRun:
    modality: str
    encoder: Encoder
    batch_size: int
    dataset: Dataset
    report: IngestReport
    bar: Progress | None
    on_batch: BatchHook | None
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason

    def encode(
        self, raws: list[str | None], sources: list[str], cache: EmbeddingCache
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        n = len(raws)
        counts = self.report.counts.setdefault(self.modality, ModalityCounts())
        counts.items = n
        keys = [self._key(i, raw, sources[i]) for i, raw in enumerate(raws)]
        pending = {}  # key -> first item with it, in item order
        for i, key in enumerate(keys):
            if key is not None and key not in cache and key not in pending:
                pending[key] = i
        cached_before = {k for k in keys if k is not None and k in cache}
        self._run_pending(pending, raws, cache)
        cache.compact()

        outputs = {name: np.zeros((n, dim), dtype=np.float32) for name, dim in cache.outputs.items()}
        mask = np.zeros(n, dtype=bool)
        rows = [i for i, k in enumerate(keys) if k is not None and k in cache]
        if rows:
            got = cache.get([keys[i] for i in rows])
            for name in outputs:
                outputs[name][rows] = got[name]
            mask[rows] = True
        for i, key in enumerate(keys):
            if raws[i] is None and self.modality != "text":
                counts.absent += 1
            elif key is not None and key in self.failed:
                self._issue(i, sources[i], "skipped", self.failed[key])
            elif key is not None and key in cache:
                counts.cached += key in cached_before
                counts.encoded += key not in cached_before
                for note in cache.notes.get(key, []):
                    self._issue(i, sources[i], "repaired", note)
        return outputs, mask

    def _key(self, item: int, raw: str | None, source: str) -> str | None:
        """Content hash of an item's input; None (with a skip recorded) when there is none to hash."""
        if raw is None:
            if self.modality == "text":
                self._issue(item, source, "skipped", "empty text (no configured field has a value)")
            return None
        if self.modality == "text":
            return content_key(raw)
        try:
            return file_key(raw)
        except FileNotFoundError:
            self._issue(item, source, "skipped", "file not found")
        except IsADirectoryError:
            self._issue(item, source, "skipped", f"is a folder, not an {self.modality} file")
        except OSError as exc:
            self._issue(item, source, "skipped", f"cannot read file: {exc.strerror or exc}")
        return None

    def _run_pending(self, pending: dict[str, int], raws: list[str | None], cache: EmbeddingCache) -> None:
        task = (
            self.bar.add_task(f"{self.modality} ({self.encoder.name})", total=len(pending))
            if self.bar
            else None
        )
        batch: list[tuple[str, Loaded]] = []
        for position, (key, item) in enumerate(pending.items(), start=1):
            try:
                batch.append((key, self.encoder.load(raws[item])))
            except BadInput as exc:
                self.failed[key] = exc.reason
            if len(batch) == self.batch_size or (position == len(pending) and batch):
                self._store(batch, cache)
                batch = []
                if self.on_batch is not None:
                    self.on_batch(self.modality, position, len(pending))
            if task is not None and self.bar is not None:
                self.bar.update(task, completed=position)

    def _store(self, batch: Sequence[tuple[str, Loaded]], cache: EmbeddingCache) -> None:
        """Encode and cache a batch; if the network fails on it, retry item by item so one odd input
        costs only itself."""
        try:
            outputs = self.encoder.encode_loaded([loaded for _, loaded in batch])
        except Exception as exc:
            if len(batch) == 1:
                self.failed[batch[0][0]] = f"encoder failed: {type(exc).__name__}: {exc}"
                return
            for one in batch:
                self._store([one], cache)
            return
        notes = {key: loaded.notes for key, loaded in batch if loaded.notes}
        cache.put([key for key, _ in batch], outputs, notes)

    def _issue(self, item: int, source: str, action: Literal["skipped", "repaired"], reason: str) -> None:
        item_id = str(self.dataset.item_ids[item])
        self.report.add(IngestIssue(self.modality, item, item_id, source, action, reason))


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
