"""LoRA-tuned MiniLM vs the frozen one for cold items on movielens-small.

Cold-item split (10% of items held out of training, seed 0: half feed validation, half test). Pairs of
items co-consumed in the training interactions only train a LoRA adapter (symmetric InfoNCE); every item's
text is then encoded through the normal encoder path (`TextEncoderConfig(adapter=...)`, ONNX fp32) and
ContentKNN(feature="text") ranks the cold items. The epoch is chosen on the cold validation items; the
cold test items are read once, for the frozen encoder and the chosen adapter. Prints a table and writes
bench/results/lora_text.json and the chosen adapter (a few hundred KB) to --out.

    python bench/lora_text.py            # ~20-25 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from crossrec.align.lora import LoraTextTuner, co_interaction_pairs
from crossrec.data.loaders import load_dataset
from crossrec.data.splits import cold_item_split
from crossrec.encoders.build import encode_dataset
from crossrec.encoders.text import item_texts
from crossrec.eval.ranking import RankingEvaluator, evaluator_for
from crossrec.io import write_json_atomic
from crossrec.models.content import ContentKNN

METRICS = ("recall@20", "ndcg@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/movielens-small")
    parser.add_argument("--cache", default=".cache/embeddings", help="embedding cache (the pipeline's)")
    parser.add_argument("--out", default="artifacts/lora-minilm-movielens", help="the chosen adapter")
    parser.add_argument("--results", default="bench/results/lora_text.json")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2, help="each epoch is a candidate on validation")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()

    dataset = load_dataset("movielens", args.data)
    split = cold_item_split(dataset.interactions, cold_fraction=0.1, seed=0)
    cold_valid = np.intersect1d(split.cold_items, split.valid.item)
    cold_test = np.intersect1d(split.cold_items, split.test.item)
    valid_eval = evaluator_for(split.valid, split.train, candidate_items=cold_valid)
    test_eval = evaluator_for(split.test, split.train, split.valid, candidate_items=cold_test)
    fields = list(dataset.content.text)  # the pipeline's default: every text field, in order
    texts = item_texts(dataset.content, fields)

    started = time.perf_counter()
    pairs = co_interaction_pairs(split.train, max_pairs=args.pairs, seed=0)
    pair_seconds = time.perf_counter() - started
    tuner = LoraTextTuner(epochs=args.epochs, max_length=args.max_length, lr=args.lr, batch_size=32, seed=0)

    def encode(adapter: Path | None) -> tuple[np.ndarray, float]:
        config = {"text": {"fields": fields, "adapter": None if adapter is None else str(adapter)}}
        start = time.perf_counter()
        result = encode_dataset(
            dataset,
            {**config, "image": None, "audio": None},
            args.cache,
            threads=args.threads,
            progress=False,
        )
        return result.vectors["text"], time.perf_counter() - start

    frozen, frozen_encode_s = encode(None)
    candidates: dict[str, dict[str, Any]] = {
        "frozen": {"valid": _evaluate(valid_eval, split.train, frozen), "encode_s": frozen_encode_s}
    }
    console.print(f"frozen: valid {_fmt(candidates['frozen']['valid'])}")
    checkpoints = Path(tempfile.mkdtemp(prefix="lora-bench-"))

    def validate(epoch: int, trained: LoraTextTuner) -> float:
        folder = trained.save(checkpoints / f"epoch-{epoch}")
        vectors, seconds = encode(folder)
        candidates[f"tuned, epoch {epoch}"] = {
            "valid": _evaluate(valid_eval, split.train, vectors),
            "encode_s": seconds,
            "train_s": trained.train_seconds,
            "loss": trained.history["epoch_loss"][-1],
            "adapter": folder,
            "vectors": vectors,
        }
        console.print(f"epoch {epoch}: loss {trained.history['epoch_loss'][-1]:.3f}, valid "
                      f"{_fmt(candidates[f'tuned, epoch {epoch}']['valid'])}")  # fmt: skip
        return candidates[f"tuned, epoch {epoch}"]["valid"]["recall@20"]

    # The tuner keeps the epoch with the best validation recall (training.EarlyStopping).
    tuner.fit(texts, pairs, progress=True, validate=validate)
    chosen = f"tuned, epoch {tuner.best_epoch}"
    _copy_atomic(candidates[chosen]["adapter"], Path(args.out))
    shutil.rmtree(checkpoints)
    for name, vectors in (("frozen", frozen), (chosen, candidates[chosen]["vectors"])):
        candidates[name]["test"] = _evaluate(test_eval, split.train, vectors)  # read once, at the end

    _print(console, candidates, chosen)
    write_json_atomic(
        args.results,
        {
            "dataset": dataset.name,
            "split": split.name,
            "cold_items": {"valid": len(cold_valid), "test": len(cold_test)},
            "users": {"valid": len(valid_eval.users), "test": len(test_eval.users)},
            "text_fields": fields,
            "pairs": {"count": len(pairs.left), "seconds": round(pair_seconds, 2)},
            "tuner": tuner.params,
            "chosen": chosen,
            "adapter": args.out,
            "adapter_bytes": sum(f.stat().st_size for f in Path(args.out).iterdir()),
            "candidates": {
                name: {k: v for k, v in c.items() if k not in ("adapter", "vectors")}
                for name, c in candidates.items()
            },
            "ratio_test": {
                m: _ratio(candidates[chosen]["test"][m], candidates["frozen"]["test"][m]) for m in METRICS
            },
            "torch": torch.__version__,
            "threads": args.threads,
        },
    )


def _evaluate(evaluator: RankingEvaluator, train: Any, vectors: np.ndarray) -> dict[str, float]:
    model = ContentKNN(feature="text").fit(train, {"text": vectors})
    metrics = evaluator(model)
    return {m: round(metrics[m], 4) for m in METRICS}


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy a folder beside `target`, then rename it into place (the old one goes only after)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    old = tmp.with_name(tmp.name + ".old")
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _ratio(new: float, base: float) -> float | None:
    return round(new / base, 3) if base else None


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _print(console: Console, candidates: dict[str, dict[str, Any]], chosen: str) -> None:
    table = Table(title="ContentKNN on cold items, movielens-small (cold_item split, seed 0)")
    for column in (
        "text vectors",
        "valid R@20",
        "valid N@20",
        "test R@20",
        "test N@20",
        "train s",
        "encode s",
    ):
        table.add_column(column, justify="left" if column == "text vectors" else "right")
    for name, c in candidates.items():
        test = c.get("test", {})
        table.add_row(
            name + (" (chosen)" if name == chosen else ""),
            *(f"{c['valid'][m]:.4f}" for m in METRICS),
            *(f"{test[m]:.4f}" if m in test else "-" for m in METRICS),
            f"{c['train_s']:.0f}" if "train_s" in c else "-",
            f"{c['encode_s']:.0f}",
        )
    frozen = candidates["frozen"]
    table.add_row(
        "ratio chosen / frozen",
        *(f"{_ratio(candidates[chosen]['valid'][m], frozen['valid'][m])}x" for m in METRICS),
        *(f"{_ratio(candidates[chosen]['test'][m], frozen['test'][m])}x" for m in METRICS),
        "",
        "",
    )
    console.print(table)


if __name__ == "__main__":
    main()
