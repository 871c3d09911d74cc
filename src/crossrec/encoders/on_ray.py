"""Encoding on a Ray cluster: the items the cache lacks go through Ray Data, an actor pool per modality.

This process (the driver) does what the local path does except run the networks: it reads the
dataset's inputs, hashes them against the cache, sends the pending ones (texts, or the files' bytes)
into a Ray Dataset, and writes each batch that comes back into the same cache, under the same keys and
fingerprint, with the same ingest report. Each actor builds the modality's encoder once, from the same
config, and checks that its fingerprint is the driver's (the same weights on every node); it then
loads and encodes batches with the local path's own steps (`Encoder.load`, `build.encode_batch`), so
a bad input is a reason in the report, not a failed task. Ray Data's streaming execution bounds what
is in flight (back-pressure); a batch whose actor dies is retried on a restarted actor.
"""

from __future__ import annotations

import json
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossrec.data.schema import Dataset
from crossrec.encoders.base import BadInput, Loaded
from crossrec.encoders.build import (
    BatchHook,
    Encoded,
    EncodeResult,
    PendingWork,
    encode_batch,
    encode_dataset,
)
from crossrec.encoders.modalities import MODALITIES, EncodersConfig, build_encoder, parse_config
from crossrec.errors import ConfigError

_OUT = "out_"  # column prefix of an output's vectors


def encode_dataset_on_ray(
    dataset: Dataset,
    encoders_config: EncodersConfig | Mapping[str, Any] | None,
    cache_dir: str | Path,
    *,
    address: str | None = None,
    concurrency: int | None = None,
    cpus_per_actor: float = 1.0,
    max_retries: int = 3,
    threads: int | None = None,
    progress: bool = True,
    on_batch: BatchHook | None = None,
    max_items: int | None = None,
    init: dict[str, Any] | None = None,
) -> EncodeResult:
    """`encode_dataset` with the networks on Ray: same cache, same result, same ingest report.

    `address`: a running cluster ("10.0.0.5:6379", "auto"), used when Ray is not initialised yet
    (None then starts a local one). `concurrency`: actors per modality (default: the cluster's CPUs
    over `cpus_per_actor`); each actor runs torch with `threads` (default: its CPUs). `max_retries`:
    restarts of a dead actor and retries of the batch it held.
    """
    ray = _ray_data()
    if not ray.is_initialized():
        ray.init(address=address, logging_level="ERROR", **(init or {}))
    config = parse_config(encoders_config)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
    remote = RayEncode(
        concurrency=concurrency,
        cpus_per_actor=cpus_per_actor,
        max_retries=max_retries,
        threads=threads or max(1, int(cpus_per_actor)),
        allow_download=config.allow_download,
        progress=progress,
    )
    return encode_dataset(
        dataset,
        config,
        cache_dir,
        progress=progress,
        on_batch=on_batch,
        max_items=max_items,
        remote=remote,
    )


@dataclass(frozen=True)
class RayEncode:
    """The `remote` of `encode_dataset`: a modality's pending items through `map_batches` on an
    actor pool, their results back in the driver as they finish."""

    concurrency: int = 1
    cpus_per_actor: float = 1.0
    max_retries: int = 3
    threads: int = 1
    allow_download: bool = False
    progress: bool = True

    def __call__(self, work: PendingWork) -> Iterator[Encoded]:
        ray = _ray_data()
        rows, unread = _rows(work)
        if unread:
            yield Encoded([], {}, {}, unread)
        if not rows:
            return
        blocks = max(1, min(-(-len(rows) // work.batch_size), 1000))  # one block per batch: spread
        # a Dataset copies the data context when it is made: switch the bars before making it
        with _progress_bars(ray, self.progress), warnings.catch_warnings():
            # ray 2.60 takes actor options only as `ray_remote_args` (deprecated, for 2.64)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                EncodeBatches,
                fn_constructor_args=(
                    work.modality,
                    work.kind,
                    work.config.model_dump(mode="json"),
                    work.fingerprint,
                    self.allow_download,
                    self.threads,
                ),
                batch_size=work.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(self.concurrency, blocks)),
                num_cpus=self.cpus_per_actor,
                max_restarts=self.max_retries,  # a dead actor is restarted ...
                max_task_retries=self.max_retries,  # ... and the batch it held is run again
            )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield _encoded(batch)


def _rows(work: PendingWork) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The Dataset's rows: the key and the input itself (a text, or a file's bytes: the driver reads
    the files, so the nodes need no shared storage); files that can no longer be read, as failures."""
    if work.kind == "text":
        return [{"key": key, "raw": raw, "suffix": ""} for key, raw in work.items], {}
    rows, unread = [], {}
    for key, path in work.items:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            unread[key] = f"cannot read file: {exc.strerror or exc}"
            continue
        rows.append({"key": key, "raw": data, "suffix": Path(path).suffix})
    return rows, unread


class EncodeBatches:
    """One actor of the pool: the modality's encoder built once, then batch after batch."""

    def __init__(
        self,
        modality: str,
        kind: str,
        config: dict[str, Any],
        fingerprint: str,
        allow_download: bool,
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        if modality not in MODALITIES:
            raise ConfigError(f"modality {modality!r} is not registered on node {socket.gethostname()}")
        parsed = MODALITIES[modality].config.model_validate(config)
        self.encoder = build_encoder(modality, parsed, allow_download=allow_download)
        if self.encoder.fingerprint != fingerprint:
            raise ConfigError(
                f"{modality} encoder on node {socket.gethostname()} is {self.encoder.fingerprint}, the "
                f"driver's is {fingerprint}: install the same weights and settings on every node"
            )
        self.kind = kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = [str(k) for k in batch["key"]]
        loaded: list[tuple[str, Loaded]] = []
        failed: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="crossrec-encode-") as tmp:
            for i, key in enumerate(keys):
                raw = batch["raw"][i]
                if self.kind != "text":  # the file as the driver read it, at a path of this node
                    path = Path(tmp) / f"input-{i}{batch['suffix'][i]}"
                    path.write_bytes(bytes(raw))
                    raw = str(path)
                try:
                    loaded.append((key, self.encoder.load(str(raw))))
                except BadInput as exc:
                    failed[key] = exc.reason
        outputs = self.encoder.outputs
        vectors = {name: np.zeros((len(keys), dim), dtype=np.float32) for name, dim in outputs.items()}
        notes = [""] * len(keys)
        position = {key: i for i, key in enumerate(keys)}
        for part in encode_batch(self.encoder, loaded):
            failed.update(part.failed)
            for row, key in enumerate(part.keys):
                for name in vectors:
                    vectors[name][position[key]] = part.outputs[name][row]
                notes[position[key]] = json.dumps(part.notes.get(key, []))
        return {
            "key": np.asarray(keys, dtype=object),
            "reason": np.asarray([failed.get(key, "") for key in keys], dtype=object),
            "notes": np.asarray(notes, dtype=object),
            **{_OUT + name: matrix for name, matrix in vectors.items()},
        }


def _encoded(batch: dict[str, np.ndarray]) -> Encoded:
    """A batch from the actors back as the local path's `Encoded`."""
    keys = [str(k) for k in batch["key"]]
    reasons = [str(r) for r in batch["reason"]]
    ok = [i for i, reason in enumerate(reasons) if not reason]
    outputs = {
        column[len(_OUT) :]: np.asarray(values, dtype=np.float32)[ok]
        for column, values in batch.items()
        if column.startswith(_OUT)
    }
    notes = {keys[i]: json.loads(str(batch["notes"][i])) for i in ok}
    return Encoded(
        [keys[i] for i in ok],
        outputs,
        {key: value for key, value in notes.items() if value},
        {keys[i]: reasons[i] for i, reason in enumerate(reasons) if reason},
    )


@contextmanager
def _progress_bars(ray: Any, enabled: bool) -> Iterator[None]:
    context = ray.data.DataContext.get_current()
    previous = context.enable_progress_bars
    context.enable_progress_bars = enabled
    try:
        yield
    finally:
        context.enable_progress_bars = previous


def _ray_data() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(
            "Ray Data is not installed: pip install 'crossrec[ray]' (ray[data]; docs/scale.md)"
        ) from None
    return ray


__all__ = ["EncodeBatches", "RayEncode", "encode_dataset_on_ray"]
