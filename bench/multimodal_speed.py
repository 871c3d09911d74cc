"""Seconds per training epoch, seconds per full evaluation and peak memory of every model, on
TikTok (its image + audio features) and Amazon Sports, beside MMRec's figures from peers.md.

Each (dataset, model) runs in a fresh process, so its peak RSS is its own. Models use MMRec's
batch size (2048) and its first-listed settings where MMRec has the model, so the comparison is
like for like. On TikTok each model also trains to early stopping on validation Recall@20 and its
test Recall/NDCG@20 are read once, so "faster" is shown at the accuracy it comes with. Sports ships
no features: its multimodal rows use random 128-d image and audio matrices (speed only, no accuracy).
Test figures mask training and validation items (`--protocol crossrec`, the default); MMRec's figures
beside them mask training items only, which `--protocol mmrec` reproduces. Rows name their protocol.

    python bench/multimodal_speed.py                     # both datasets, 2 torch threads
    python bench/multimodal_speed.py --datasets tiktok --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "diffmm"
DEFAULT_OUT = ROOT / "bench" / "results" / "multimodal_speed.json"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMON: dict[str, Any] = {"embedding_dim": 64, "batch_size": 2048}
# label -> (registry name, params). FREEDOM-bpr is MMRec's FREEDOM setting (BPR, 80% degree-
# sensitive edge dropout, k=10); FREEDOM-softmax and LightGCN-8192 are configs/tiktok_multimodal.yaml's.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "BPR": ("bpr", {"lr": 1e-3, "reg_weight": 1e-4}),
    "LightGCN": ("lightgcn", {"n_layers": 2, "lr": 1e-3, "reg_weight": 1e-4}),
    "LightGCN-8192": ("lightgcn", {"n_layers": 2, "lr": 2e-3, "reg_weight": 1e-3, "batch_size": 8192}),
    "VBPR": ("vbpr", {"lr": 1e-3, "reg_weight": 1e-3}),
    "BM3": ("bm3", {"n_layers": 1, "lr": 1e-3, "reg_weight": 0.1, "dropout": 0.3, "cl_weight": 2.0}),
    "FREEDOM-bpr": ("freedom", {"lr": 1e-3, "edge_keep": 0.2, "modality_loss_weight": 1e-3}),
    "FREEDOM-softmax": (
        "freedom",
        {
            "lr": 3e-4,
            "edge_keep": 1.0,
            "modality_loss_weight": 0.1,
            "reg_weight": 1e-3,
            "loss": "softmax",
            "n_negatives": 32,
            "temperature": 0.1,
        },
    ),
    "AlphaRec": ("alpharec", {"hidden_dim": 64, "n_negatives": 16, "lr": 1e-3}),
}
# MMRec on the same TikTok split (shared/benchmarks/peers.md): s per train epoch uncontended (2 threads),
# and its table of test Recall@20 at its own early-stopped epoch.
MMREC_S_PER_EPOCH = {
    "LightGCN": 1.31,
    "LightGCN-8192": 1.31,
    "FREEDOM-bpr": 3.00,
    "FREEDOM-softmax": 3.00,
    "BM3": 3.36,
}
MMREC_RECALL20 = {
    "BPR": 0.0024,
    "LightGCN": 0.0888,
    "VBPR": 0.0524,
    "BM3": 0.0643,
    "FREEDOM-bpr": 0.0771,
    "FREEDOM-softmax": 0.0771,
}


def run_one(
    dataset: str,
    label: str,
    data_root: str,
    threads: int,
    epochs: int,
    train_to_convergence: bool,
    protocol: str,
) -> dict[str, Any]:
    """Time one model on one dataset; runs in a fresh process."""
    import numpy as np
    import torch

    from crossrec.data.loaders import load_dataset
    from crossrec.eval.ranking import evaluator_for
    from crossrec.models import build_model

    torch.set_num_threads(threads)
    data = load_dataset("diffmm", Path(data_root) / dataset)
    split = data.split
    assert split is not None
    features = dict(data.content.features)
    synthetic = not features
    if synthetic:
        rng = np.random.default_rng(0)
        features = {m: rng.normal(size=(split.n_items, 128)).astype(np.float32) for m in ("image", "audio")}
    name, params = MODELS[label]
    valid = evaluator_for(split.valid, split.train)
    if train_to_convergence and not synthetic:
        fit_params = {**COMMON, **params, "epochs": 1000, "eval_every": 5, "patience": 5}
    else:
        fit_params = {**COMMON, **params, "epochs": epochs, "eval_every": epochs, "patience": 1}
    model = build_model(name, **fit_params)
    start = time.perf_counter()
    model.fit(split.train, features, valid=valid)
    fit_seconds = time.perf_counter() - start
    row: dict[str, Any] = {
        "dataset": dataset,
        "model": label,
        "s/epoch": statistics.median(h["seconds"] for h in model.history),
        "s/eval": statistics.median(h["eval_seconds"] for h in model.history if "eval_seconds" in h),
        "epochs": len(model.history),
        "fit s": fit_seconds,
        "peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "features": "random 128-d (speed only)" if synthetic else ", ".join(features),
    }
    if train_to_convergence and not synthetic:
        test = evaluator_for(split.test, split.train, split.valid, protocol=protocol)(model)
        row.update({"best epoch": model.best_epoch, "R@20": test["recall@20"], "N@20": test["ndcg@20"]})
        row["protocol"] = protocol
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = [
        "dataset",
        "model",
        "s/epoch",
        "MMRec s/epoch",
        "ratio",
        "s/eval",
        "peak RSS MB",
        "epochs",
        "R@20",
        "N@20",
        "protocol",
        "MMRec R@20 (mmrec protocol)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        mm = MMREC_S_PER_EPOCH.get(r["model"]) if r["dataset"] == "tiktok" else None
        mm_r = MMREC_RECALL20.get(r["model"]) if r["dataset"] == "tiktok" else None
        cells = [
            r["dataset"],
            r["model"],
            f"{r['s/epoch']:.2f}",
            f"{mm:.2f}" if mm else "-",
            f"{r['s/epoch'] / mm:.2f}" if mm else "-",
            f"{r['s/eval']:.2f}",
            f"{r['peak RSS MB']:.0f}",
            str(r["epochs"]),
            f"{r['R@20']:.4f}" if "R@20" in r else "-",
            f"{r['N@20']:.4f}" if "N@20" in r else "-",
            r.get("protocol", "-"),
            f"{mm_r:.4f}" if mm_r else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from crossrec.eval.ranking import MASKED_AT_TEST  # after OMP_WAIT_POLICY is set: it loads torch

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["tiktok", "sports"], choices=["tiktok", "sports", "baby"]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data-root", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs where no accuracy is measured")
    parser.add_argument("--no-accuracy", action="store_true", help="time a few epochs only, everywhere")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument(
        "--protocol", default="crossrec", choices=list(MASKED_AT_TEST), help="what is masked at test"
    )
    args = parser.parse_args(argv)

    from machine import machine_facts

    from crossrec.io import write_json_atomic

    started, load_before = time.time(), os.getloadavg()
    rows = []
    for dataset in args.datasets:
        for label in args.models:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                row = pool.submit(
                    run_one,
                    dataset,
                    label,
                    args.data_root,
                    args.threads,
                    args.epochs,
                    not args.no_accuracy,
                    args.protocol,
                ).result()
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(format_rows(rows))
    payload = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "models": MODELS,
        "common": COMMON,
        "threads": args.threads,
        "eval_protocol": args.protocol,
        "masked_at_test": list(MASKED_AT_TEST[args.protocol]),
        "machine": machine_facts(load_before),
        "wall_seconds": time.time() - started,
        "rows": rows,
        "table": format_rows(rows),
    }
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
