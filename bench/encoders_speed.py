"""Encoder speed: items per second of each encoder's fp32 torch path and of its fast paths, side by side.

Every crossrec path of an encoder encodes the same decoded inputs in the same batches (the encode
config's batch sizes); MiniLM's torch and ONNX paths both sort each batch by length into micro-batches
of 16, so the torch fp32 reference batches as fairly as the fast paths. For text there is a second
reference: plain sentence-transformers `encode` of the whole list in batches of 64 (it sorts the whole
list by length), the number a user would compare with. Images and audio have only the torch fp32
reference. After a warm-up batch the paths take turns, best of --repeats passes, so a load spike on
shared cores hits them alike. The table gives items/s of the network step (tokenising included), the
speed-up over each reference and the cosine of each item's vector to its torch fp32 vector. Decoding
(image decode + resize, audio decode + resample + mel) is the same for every path and is timed once per
encoder. Inputs are real: movielens-small texts (title, genres, tags, overview), posters, and Debian's
sound-theme-freedesktop recordings repeated to fill the clip count. The load average before and after
is written beside the numbers: on shared cores, rates are lower bounds.

    python bench/encoders_speed.py                 # 2 threads; writes bench/results/encoders_speed.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Spinning OpenMP threads slow a 2-thread torch several-fold whenever another process shares the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import onnxruntime
import torch
from rich.console import Console
from rich.table import Table

from crossrec.data.loaders.movielens import load_movielens
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.base import MAIN_OUTPUT, Encoder, Loaded
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.modalities import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from crossrec.encoders.registry import ResolvedModel, resolve
from crossrec.encoders.text import (
    MiniLMEncoder,
    WordLlamaEncoder,
    item_texts,
    load_sentence_transformer,
)
from crossrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "movielens-small"
DEFAULT_OUT = ROOT / "bench" / "results" / "encoders_speed.json"
SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")
TEXT_FIELDS = ["title", "genres", "tags", "overview"]
TORCH, ST = "torch fp32", "sentence-transformers encode"  # the references speed-ups are taken against

Run = Callable[[list[Loaded]], np.ndarray]  # encodes every loaded input, one row each


def real_inputs(data: Path, n_texts: int, n_images: int, n_clips: int) -> dict[str, list[Any]]:
    """The first items of movielens-small that have each input, and the recordings repeated to `n_clips`."""
    dataset = load_movielens(data)
    texts = [t for t in item_texts(dataset.content, TEXT_FIELDS) if t][:n_texts]
    posters = [p for p in dataset.content.image or [] if p is not None][:n_images]
    sounds = sorted(SOUNDS.glob("*.oga"))
    if not sounds:
        sys.exit(f"no recordings in {SOUNDS}: apt-get install -y sound-theme-freedesktop")
    return {"text": texts, "image": posters, "audio": [sounds[i % len(sounds)] for i in range(n_clips)]}


def batched(encoder: Encoder, batch: int) -> Run:
    """An encoder's path as the pipeline runs it: `encode_loaded` on consecutive batches."""

    def run(loaded: list[Loaded]) -> np.ndarray:
        return np.concatenate(
            [encoder.encode_loaded(loaded[i : i + batch])[MAIN_OUTPUT] for i in range(0, len(loaded), batch)]
        )

    return run


def st_encode(model: Any, batch: int) -> Run:
    """Plain `SentenceTransformer.encode` of the whole list: it sorts every text by length first."""

    def run(loaded: list[Loaded]) -> np.ndarray:
        texts = [item.data for item in loaded]
        return np.asarray(model.encode(texts, batch_size=batch, show_progress_bar=False), dtype=np.float32)

    return run


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    unit = [m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12) for m in (vectors, reference)]
    return (unit[0] * unit[1]).sum(axis=1)


def bench_encoder(
    label: str,
    load: Callable[[Any], Loaded],
    paths: dict[str, Run],
    raws: list[Any],
    batch: int,
    repeats: int,
) -> list[dict[str, Any]]:
    """One row per path, with its speed-up over the TORCH and ST paths and its cosine to TORCH, where the
    encoder has them (None otherwise)."""
    load(raws[0])  # warm-up: first calls of decoders and torch.stft set up lazily
    start = time.perf_counter()
    loaded = [load(raw) for raw in raws]
    decode_rate = len(loaded) / (time.perf_counter() - start)
    for run in paths.values():
        run(loaded[:batch])  # warm-up: sessions, allocators, lazy set-up
    best = dict.fromkeys(paths, float("inf"))
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # paths take turns, so a load spike on shared cores hits them alike
        for path, run in paths.items():
            start = time.perf_counter()
            vectors[path] = run(loaded)
            best[path] = min(best[path], time.perf_counter() - start)
    rate = {path: len(loaded) / seconds for path, seconds in best.items()}
    rows: list[dict[str, Any]] = []
    for path in paths:
        cos = cosines(vectors[path], vectors[TORCH]) if TORCH in paths else None
        rows.append(
            {
                "encoder": label,
                "path": path,
                "items": len(loaded),
                "batch": batch,
                "items_per_s": round(rate[path], 2),
                "speedup_vs_torch_fp32": round(rate[path] / rate[TORCH], 2) if TORCH in rate else None,
                "speedup_vs_st_encode": round(rate[path] / rate[ST], 2) if ST in rate else None,
                "cos_mean": None if cos is None else round(float(cos.mean()), 5),
                "cos_min": None if cos is None else round(float(cos.min()), 5),
                "decode_items_per_s": round(decode_rate, 1),
            }
        )
    return rows


def minilm_paths(model: ResolvedModel, batch: int) -> tuple[Callable[[Any], Loaded], dict[str, Run]]:
    torch_path = MiniLMEncoder(model)
    return torch_path.load, {
        TORCH: batched(torch_path, batch),
        ST: st_encode(load_sentence_transformer(model), batch),
        "onnx fp32": batched(MiniLMEncoder(model, backend="onnx"), batch),
        "onnx int8": batched(MiniLMEncoder(model, backend="onnx", precision="int8"), batch),
    }


def encoder_paths(encoders: dict[str, Encoder], batch: int) -> tuple[Callable[[Any], Loaded], dict[str, Run]]:
    """Every path decodes through the first one's `load`: decoding does not depend on the path."""
    return next(iter(encoders.values())).load, {name: batched(e, batch) for name, e in encoders.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timed passes per path")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)

    from machine import machine_facts

    started, load_before = time.perf_counter(), os.getloadavg()
    torch.set_num_threads(args.threads)  # the ONNX Runtime sessions take the same thread count
    console = Console(width=150)
    inputs = real_inputs(Path(args.data), args.texts, args.images, args.clips)

    minilm = resolve("all-MiniLM-L6-v2")
    effnet = resolve("efficientnet-lite0")
    aisfx = resolve("aisfx")
    text, image, audio = (
        TextEncoderConfig().batch_size,
        ImageEncoderConfig().batch_size,
        AudioEncoderConfig().batch_size,
    )
    suites: list[tuple[str, str, int, Callable[[], tuple[Callable[[Any], Loaded], dict[str, Run]]]]] = [
        ("all-MiniLM-L6-v2", "text", text, lambda: minilm_paths(minilm, text)),
        (
            "wordllama-l2-supercat-256",
            "text",
            text,
            lambda: encoder_paths({"numpy fp32 (only path)": WordLlamaEncoder(resolve("wordllama"))}, text),
        ),
        (
            "efficientnet-lite0",
            "image",
            image,
            lambda: encoder_paths(
                {
                    TORCH: EfficientNetLiteEncoder(effnet),
                    "onnx fp32": EfficientNetLiteEncoder(effnet, backend="onnx"),
                },
                image,
            ),
        ),
        (
            "aisfx",
            "audio",
            audio,
            lambda: encoder_paths(
                {TORCH: AisfxEncoder(aisfx), "onnx fp32": AisfxEncoder(aisfx, backend="onnx")}, audio
            ),
        ),
    ]
    rows = []
    for label, modality, batch, build in suites:
        console.print(f"[dim]{label}: {len(inputs[modality])} {modality} inputs, batches of {batch}[/dim]")
        load, paths = build()
        rows += bench_encoder(label, load, paths, inputs[modality], batch, args.repeats)

    machine = {
        "platform": f"{platform.machine()} {platform.processor() or ''}".strip(),
        **machine_facts(load_before),
    }
    table = Table(title=f"Encoder speed, {args.threads} threads (network step; cosine to torch fp32)")
    columns = (
        "encoder",
        "path",
        "items",
        "batch",
        "items/s",
        "vs torch fp32",
        "vs ST encode",
        "cos mean",
        "cos min",
        "decode/s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("encoder", "path") else "right")
    for row in rows:
        table.add_row(
            row["encoder"],
            row["path"],
            str(row["items"]),
            str(row["batch"]),
            f"{row['items_per_s']:.1f}",
            *(_cell(row[key], "{:.2f}x") for key in ("speedup_vs_torch_fp32", "speedup_vs_st_encode")),
            *(_cell(row[key], "{:.4f}") for key in ("cos_mean", "cos_min")),
            f"{row['decode_items_per_s']:.0f}",
        )
    console.print(table)
    console.print(
        f"load average {_loads(machine['load_avg_before'])} before, "
        f"{_loads(machine['load_avg_after'])} after ({machine['cpus']} CPUs)"
    )
    write_json_atomic(
        args.out,
        {
            "command": " ".join(
                ["python bench/encoders_speed.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "references": {
                TORCH: "crossrec's torch path, batched as the pipeline batches (MiniLM: length-sorted "
                "micro-batches of 16 inside each batch of 64); the only reference for images and audio",
                ST: "plain SentenceTransformer.encode of the whole text list, batch_size 64 (text only)",
            },
            "threads": args.threads,
            "repeats": args.repeats,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "machine": machine,
            "versions": {
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "sentence_transformers": importlib.metadata.version("sentence-transformers"),
            },
            "wall_seconds": round(time.perf_counter() - started, 1),
            "rows": rows,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _loads(loads: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.2f}" for x in loads)


if __name__ == "__main__":
    raise SystemExit(main())
