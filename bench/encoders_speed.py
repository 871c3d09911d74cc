"""Encoder speed: items per second of the plain fp32 torch model and of each fast path, side by side.

Every path of an encoder encodes the same decoded inputs in the same batches (the encode config's batch
sizes); after a warm-up batch the paths take turns, best of --repeats passes, so a load spike on shared
cores hits them alike. The table gives items/s of the network step (tokenising included), the speed-up
over torch fp32 and the cosine of each item's vector to its torch fp32 vector. Decoding (image decode +
resize, audio decode + resample + mel) is the same for every path and is timed once per encoder. Inputs
are real: movielens-small texts (title, genres, tags, overview), posters, and Debian's
sound-theme-freedesktop recordings repeated to fill the clip count.

    python bench/encoders_speed.py                 # 2 threads; writes bench/results/encoders_speed.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from rich.console import Console
from rich.table import Table

from crossrec.data.loaders.movielens import load_movielens
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.base import MAIN_OUTPUT, Encoder, Loaded
from crossrec.encoders.build import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.registry import resolve
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder, item_texts
from crossrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "movielens-small"
DEFAULT_OUT = ROOT / "bench" / "results" / "encoders_speed.json"
SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")
TEXT_FIELDS = ["title", "genres", "tags", "overview"]


def real_inputs(data: Path, n_texts: int, n_images: int, n_clips: int) -> dict[str, list[Any]]:
    """The first items of movielens-small that have each input, and the recordings repeated to `n_clips`."""
    dataset = load_movielens(data)
    texts = [t for t in item_texts(dataset.content, TEXT_FIELDS) if t][:n_texts]
    posters = [p for p in dataset.content.image or [] if p is not None][:n_images]
    sounds = sorted(SOUNDS.glob("*.oga"))
    if not sounds:
        sys.exit(f"no recordings in {SOUNDS}: apt-get install -y sound-theme-freedesktop")
    return {"text": texts, "image": posters, "audio": [sounds[i % len(sounds)] for i in range(n_clips)]}


def timed_pass(
    encode: Callable[[Sequence[Loaded]], dict[str, np.ndarray]], loaded: list[Loaded], batch: int
) -> tuple[float, np.ndarray]:
    """Seconds to encode every batch, and the embeddings."""
    start = time.perf_counter()
    parts = [encode(loaded[i : i + batch])[MAIN_OUTPUT] for i in range(0, len(loaded), batch)]
    return time.perf_counter() - start, np.concatenate(parts)


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    unit = [m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12) for m in (vectors, reference)]
    return (unit[0] * unit[1]).sum(axis=1)


def bench_encoder(
    label: str, paths: dict[str, Encoder], raws: list[Any], batch: int, repeats: int
) -> list[dict[str, Any]]:
    """One row per path; the first path is the reference the others are compared with."""
    first = next(iter(paths.values()))
    first.load(raws[0])  # warm-up: first calls of decoders and torch.stft set up lazily
    start = time.perf_counter()
    loaded = [first.load(raw) for raw in raws]
    decode_rate = len(loaded) / (time.perf_counter() - start)
    for encoder in paths.values():
        encoder.encode_loaded(loaded[:batch])  # warm-up: sessions, allocators, lazy set-up
    best = dict.fromkeys(paths, float("inf"))
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # paths take turns, so a load spike on shared cores hits them alike
        for path, encoder in paths.items():
            seconds, vectors[path] = timed_pass(encoder.encode_loaded, loaded, batch)
            best[path] = min(best[path], seconds)
    reference, base_rate = vectors[next(iter(paths))], len(loaded) / best[next(iter(paths))]
    rows: list[dict[str, Any]] = []
    for path in paths:
        rate = len(loaded) / best[path]
        cos = cosines(vectors[path], reference)
        rows.append(
            {
                "encoder": label,
                "path": path,
                "items": len(loaded),
                "batch": batch,
                "items_per_s": round(rate, 2),
                "speedup": round(rate / base_rate, 2),
                "cos_mean": round(float(cos.mean()), 5),
                "cos_min": round(float(cos.min()), 5),
                "decode_items_per_s": round(decode_rate, 1),
            }
        )
    return rows


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
    torch.set_num_threads(args.threads)  # the ONNX Runtime sessions take the same thread count
    console = Console(width=120)
    inputs = real_inputs(Path(args.data), args.texts, args.images, args.clips)

    minilm = resolve("all-MiniLM-L6-v2")
    effnet = resolve("efficientnet-lite0")
    aisfx = resolve("aisfx")
    suites: list[tuple[str, Callable[[], dict[str, Encoder]], str, int]] = [
        (
            "all-MiniLM-L6-v2",
            lambda: {
                "torch fp32": MiniLMEncoder(minilm),
                "onnx fp32": MiniLMEncoder(minilm, backend="onnx"),
                "onnx int8": MiniLMEncoder(minilm, backend="onnx", precision="int8"),
            },
            "text",
            TextEncoderConfig().batch_size,
        ),
        (
            "wordllama-l2-supercat-256",
            lambda: {"numpy fp32 (only path)": WordLlamaEncoder(resolve("wordllama"))},
            "text",
            TextEncoderConfig().batch_size,
        ),
        (
            "efficientnet-lite0",
            lambda: {
                "torch fp32": EfficientNetLiteEncoder(effnet),
                "onnx fp32": EfficientNetLiteEncoder(effnet, backend="onnx"),
            },
            "image",
            ImageEncoderConfig().batch_size,
        ),
        (
            "aisfx",
            lambda: {"torch fp32": AisfxEncoder(aisfx), "onnx fp32": AisfxEncoder(aisfx, backend="onnx")},
            "audio",
            AudioEncoderConfig().batch_size,
        ),
    ]
    rows = []
    for label, build, modality, batch in suites:
        console.print(f"[dim]{label}: {len(inputs[modality])} {modality} inputs, batches of {batch}[/dim]")
        rows += bench_encoder(label, build(), inputs[modality], batch, args.repeats)

    table = Table(title=f"Encoder speed, {args.threads} threads (network step; cosine to torch fp32)")
    for column in ("encoder", "path", "items", "items/s", "speed-up", "cos mean", "cos min", "decode/s"):
        table.add_column(column, justify="left" if column in ("encoder", "path") else "right")
    for row in rows:
        table.add_row(
            row["encoder"],
            row["path"],
            str(row["items"]),
            f"{row['items_per_s']:.1f}",
            f"{row['speedup']:.2f}x",
            f"{row['cos_mean']:.4f}",
            f"{row['cos_min']:.4f}",
            f"{row['decode_items_per_s']:.0f}",
        )
    console.print(table)
    write_json_atomic(
        args.out,
        {
            "command": " ".join(
                ["python bench/encoders_speed.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "threads": args.threads,
            "repeats": args.repeats,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "rows": rows,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
