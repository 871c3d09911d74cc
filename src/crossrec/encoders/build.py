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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crossrec.data.features import ItemFeatures
from crossrec.data.schema import Dataset, Interactions, ItemContent
from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.cache import EmbeddingCache, content_key, file_key
from crossrec.encoders.ingest import IngestIssue, IngestReport, ModalityCounts
from crossrec.encoders.modalities import (
    MODALITIES,
    EncodersConfig,
    ImageEncoderConfig,
    build_encoder,
    parse_config,
    text_fields,
)

BatchHook = Callable[[str, int, int], None]  # (modality, items done, items pending in this run)


@dataclass
class Encoded:
    """What a batch gave: every output for `keys` (in their order) with their repair notes, and the
    reason for each key that could not be encoded."""

    keys: list[str]
    outputs: dict[str, np.ndarray]
    notes: dict[str, list[str]]
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingWork:
    """One modality's items the cache lacks, for a `remote` encoder: (key, raw input) in item order,
    and what is needed to build the same encoder elsewhere (its config; its fingerprint to check)."""

    modality: str
    kind: str
    config: Any
    fingerprint: str
    batch_size: int
    items: list[tuple[str, str]]


RemoteEncode = Callable[[PendingWork], Iterator[Encoded]]


class EncodeResult(NamedTuple):
    """`vectors[name]`: (n_items, d) float32, zero rows where `present[name]` is False (no input,
    outside the `max_items` slice, or skipped: see `report`). Names: the modality for its embedding,
    "<modality>_<output>" for extras; `fingerprints[name]` is the encoder that made them."""

    vectors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    report: IngestReport
    fingerprints: dict[str, str] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)

    @property
    def features(self) -> dict[str, ItemFeatures]:
        """The vectors as the one item-features type the later stages read."""
        return {
            name: ItemFeatures(matrix, self.present[name], self.fingerprints.get(name, name))
            for name, matrix in self.vectors.items()
        }


def encode_dataset(
    dataset: Dataset,
    encoders_config: EncodersConfig | Mapping[str, Any] | None,
    cache_dir: str | Path,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_batch: BatchHook | None = None,
    max_items: int | None = None,
    remote: RemoteEncode | None = None,
) -> EncodeResult:
    """Encode every configured modality the dataset has; cached content is not encoded again.

    `encoders` supplies ready encoders by modality (reused across calls; otherwise built from the
    config). `on_batch(modality, done, pending)` runs after each batch is safely cached: a hook for
    progress reporting and benchmarks. `max_items` encodes only the most-interacted items (a quick
    slice); the others come back absent. `remote` encodes the pending items elsewhere (Ray:
    `encoders/on_ray.py`) while this process still hashes the inputs, writes the cache and the report.
    """
    rows = items_to_encode(dataset, max_items)
    if len(rows) < dataset.n_items:
        sliced = encode_dataset(
            content_subset(dataset, rows),
            encoders_config,
            cache_dir,
            encoders=encoders,
            threads=threads,
            progress=progress,
            on_batch=on_batch,
            remote=remote,
        )
        return _widen(sliced, rows, dataset.n_items)
    config = parse_config(encoders_config)
    report = IngestReport()
    vectors: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    fingerprints: dict[str, str] = {}
    inputs = _modality_inputs(dataset, config, report)
    with _torch_threads(threads), _progress(progress) as bar:
        for modality, (modality_config, raws, sources) in inputs.items():
            encoder = (encoders or {}).get(modality) or build_encoder(
                modality, modality_config, allow_download=config.allow_download
            )
            batch_size = getattr(modality_config, "batch_size", 16)
            kind = MODALITIES[modality].kind
            run = _ModalityRun(
                modality, kind, encoder, batch_size, dataset, report, bar, on_batch, modality_config, remote
            )
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
                fingerprints[name] = encoder.fingerprint
    return EncodeResult(vectors, present, report, fingerprints)


def items_to_encode(dataset: Dataset, max_items: int | None) -> np.ndarray:
    """All items, or the `max_items` most-interacted ones (ties by index) for a quick slice."""
    if max_items is None or max_items >= dataset.n_items:
        return np.arange(dataset.n_items)
    counts = dataset.interactions.item_counts()
    return np.sort(np.argsort(-counts, kind="stable")[:max_items])


def content_subset(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """The content of `rows` only, as a dataset of its own (no interactions)."""
    c = dataset.content
    pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
    content = ItemContent(
        text={k: pick(v) for k, v in c.text.items()}, image=pick(c.image), audio=pick(c.audio)
    )
    empty = Interactions([], [], [], dataset.n_users, len(rows))
    return Dataset(dataset.name, dataset.user_ids, dataset.item_ids[rows], empty, content)


def _widen(result: EncodeResult, rows: np.ndarray, n_items: int) -> EncodeResult:
    """A slice's vectors back in the full item space, absent outside the slice."""
    vectors, present = {}, {}
    for name, matrix in result.vectors.items():
        vectors[name] = np.zeros((n_items, matrix.shape[1]), dtype=np.float32)
        vectors[name][rows] = matrix
        present[name] = np.zeros(n_items, dtype=bool)
        present[name][rows] = result.present[name]
    return EncodeResult(vectors, present, result.report, result.fingerprints)


def _modality_inputs(
    dataset: Dataset, config: EncodersConfig, report: IngestReport
) -> dict[str, tuple[Any, list[str | None], list[str]]]:
    """Per configured modality the dataset has: its config, one raw input per item, and their sources."""
    found: dict[str, tuple[Any, list[str | None], list[str]]] = {}
    for name, modality in MODALITIES.items():
        modality_config = config.modality_config(name)
        if modality_config is None:
            continue
        raws = modality.inputs(dataset.content, modality_config)
        if raws is None or (modality.kind == "file" and all(r is None for r in raws)):
            report.not_in_dataset.append(name)
            continue
        if modality.kind == "text":
            fields = text_fields(dataset.content, modality_config)
            sources = [f"text fields {', '.join(fields)}"] * len(raws)
        else:
            sources = [str(r) for r in raws]
        found[name] = (modality_config, list(raws), sources)
    return found


@dataclass
class _ModalityRun:
    modality: str
    kind: str
    encoder: Encoder
    batch_size: int
    dataset: Dataset
    report: IngestReport
    bar: Progress | None
    on_batch: BatchHook | None
    config: Any = None
    remote: RemoteEncode | None = None
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
        if self.remote is None:
            self._run_pending(pending, raws, cache)
        elif pending:
            self._run_remote(pending, raws, cache)
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
            if raws[i] is None and self.kind != "text":
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
            if self.kind == "text":
                self._issue(item, source, "skipped", "empty text (no configured field has a value)")
            return None
        if self.kind == "text":
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
        for part in encode_batch(self.encoder, batch):
            self._put(part, cache)

    def _put(self, part: Encoded, cache: EmbeddingCache) -> None:
        self.failed.update(part.failed)
        if part.keys:
            cache.put(part.keys, part.outputs, part.notes)

    def _run_remote(self, pending: dict[str, int], raws: list[str | None], cache: EmbeddingCache) -> None:
        """The pending items through `remote` (another machine's encoders): its batches are cached
        here, as they come back, exactly as local ones are."""
        assert self.remote is not None
        task = (
            self.bar.add_task(f"{self.modality} ({self.encoder.name})", total=len(pending))
            if self.bar
            else None
        )
        work = PendingWork(
            self.modality,
            self.kind,
            self.config,
            self.encoder.fingerprint,
            self.batch_size,
            [(key, raws[item]) for key, item in pending.items()],  # type: ignore[misc]
        )
        done = 0
        for part in self.remote(work):
            self._put(part, cache)
            done += len(part.keys) + len(part.failed)
            if self.on_batch is not None:
                self.on_batch(self.modality, done, len(pending))
            if task is not None and self.bar is not None:
                self.bar.update(task, completed=done)

    def _issue(self, item: int, source: str, action: Literal["skipped", "repaired"], reason: str) -> None:
        item_id = str(self.dataset.item_ids[item])
        self.report.add(IngestIssue(self.modality, item, item_id, source, action, reason))


def encode_batch(encoder: Encoder, batch: Sequence[tuple[str, Loaded]]) -> list[Encoded]:
    """Encode a batch of loaded inputs; if the network fails on it, retry item by item so one odd
    input costs only itself. One part for the batch, or one per item after a failure."""
    if not batch:
        return []
    try:
        outputs = encoder.encode_loaded([loaded for _, loaded in batch])
    except Exception as exc:
        if len(batch) == 1:
            return [Encoded([], {}, {}, {batch[0][0]: f"encoder failed: {type(exc).__name__}: {exc}"})]
        return [part for one in batch for part in encode_batch(encoder, [one])]
    notes = {key: loaded.notes for key, loaded in batch if loaded.notes}
    return [Encoded([key for key, _ in batch], outputs, notes)]


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
