"""Does a graph model train as well with a few large steps per epoch as with many small ones?

A LightGCN step propagates the whole user-item graph, so at a fixed batch an epoch costs
edges^2 / batch and grows quadratically with the data; with a fixed number of steps per epoch
(`steps_per_epoch`, the batch grown with the data) it grows linearly (bench/scale.py, docs/scale.md).
This benchmark measures what that costs in accuracy on the largest real split here that trains in
minutes, Amazon Baby (DiffMM's split, 118k training pairs): the usual batch (8192 pairs, 15 steps an
epoch) against 4 steps and 1 step an epoch (batches of 30k and 118k pairs), each with its learning rate
chosen on validation from a small grid. Validation runs every ~60 steps in every setting (so early
stopping sees the same amount of training between checks), the epoch and the learning rate are
chosen on validation Recall@20, and the test split is read once per setting, for the chosen model.

    python bench/large_batch.py          # about 25 minutes on 2 cores; bench/results/large_batch.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "diffmm" / "baby"
DEFAULT_OUT = ROOT / "bench" / "results" / "large_batch.json"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see lightgcn_diffmm.py

# bench/lightgcn_diffmm.py's chosen Baby configuration (n_layers and reg_weight chosen there).
BASE: dict[str, Any] = {"embedding_dim": 64, "n_layers": 4, "reg_weight": 1e-3, "patience": 5, "seed": 0}
EVAL_STEPS = 60  # steps between validations, about the same in every setting
# (name, trainer parameters, learning rates searched on validation)
SETTINGS: list[tuple[str, dict[str, Any], list[float]]] = [
    ("batch 8192", {"batch_size": 8192}, [2e-3, 5e-3]),
    ("4 steps / epoch", {"steps_per_epoch": 4}, [2e-3, 5e-3, 1e-2]),
    ("1 step / epoch", {"steps_per_epoch": 1}, [5e-3, 1e-2, 2e-2]),
]
MAX_STEPS = 3000  # the budget: each fit stops here if early stopping has not stopped it


def run(
    data: Path, threads: int, settings: list[tuple[str, dict[str, Any], list[float]]], max_steps: int
) -> dict[str, Any]:
    import torch

    from crossrec.data.loaders import load_dataset
    from crossrec.eval.ranking import evaluator_for
    from crossrec.models import LightGCN
    from crossrec.models.training import epoch_batch_size

    torch.set_num_threads(threads)
    split = load_dataset("diffmm", data).split
    assert split is not None, "DiffMM folders ship their split"
    pairs = split.train.to_csr(binary=True).nnz
    valid = evaluator_for(split.valid, split.train)
    test = evaluator_for(split.test, split.train, split.valid)
    rows = []
    for name, trainer, lrs in settings:
        trials, best_model = [], None
        for lr in lrs:
            params = {**BASE, **trainer, "lr": lr}
            probe = LightGCN(**params)
            batch = epoch_batch_size(probe, pairs)
            steps = math.ceil(pairs / batch)
            params |= {"eval_every": max(1, round(EVAL_STEPS / steps)), "epochs": max(1, max_steps // steps)}
            start = time.perf_counter()
            model = LightGCN(**params).fit(split.train, valid=valid)
            fit_seconds = time.perf_counter() - start
            best = next(h for h in model.history if h["epoch"] == model.best_epoch)
            trial = {
                "lr": lr,
                "batch": batch,
                "steps_per_epoch": steps,
                "eval_every": params["eval_every"],
                "valid_recall@20": best["recall@20"],
                "best_epoch": model.best_epoch,
                "steps_to_best": model.best_epoch * steps,
                "epochs_run": model.history[-1]["epoch"],
                "s_per_epoch": statistics.median(h["seconds"] for h in model.history),
                "train_s_to_best": sum(h["seconds"] for h in model.history[: model.best_epoch]),
                "fit_seconds": fit_seconds,
            }
            print(f"[{name}] {json.dumps(trial)}", flush=True)
            if best_model is None or trial["valid_recall@20"] > max(t["valid_recall@20"] for t in trials):
                best_model, chosen = model, trial
            trials.append(trial)
        assert best_model is not None
        metrics = test(best_model)
        rows.append(
            {
                "setting": name,
                "chosen": chosen,
                "test": {k: metrics[k] for k in ("recall@20", "ndcg@20")},
                "trials": trials,
            }
        )
    return {"summary": split.summary(), "pairs": pairs, "rows": rows}


def format_table(rows: list[dict[str, Any]]) -> str:
    ref = rows[0]
    lines = [
        "| setting | batch | lr (chosen on valid) | valid R@20 | test R@20 | test N@20 | test R@20 / first "
        "| best epoch (steps) | s / epoch | train s to best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        c, t = row["chosen"], row["test"]
        lines.append(
            f"| {row['setting']} | {c['batch']:,} | {c['lr']:g} | {c['valid_recall@20']:.4f} | "
            f"{t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {t['recall@20'] / ref['test']['recall@20']:.3f} | "
            f"{c['best_epoch']} ({c['steps_to_best']:,}) | {c['s_per_epoch']:.2f} | "
            f"{c['train_s_to_best']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="a bound on each fit's steps")
    args = parser.parse_args(argv)

    from machine import machine_facts

    from crossrec.io import write_json_atomic

    started, load_before = time.time(), os.getloadavg()
    result = run(args.data, args.threads, SETTINGS, args.max_steps)
    print(format_table(result["rows"]))
    payload = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "protocol": "full ranking; train items masked at validation, train and valid at test; epoch and lr "
        "chosen on valid Recall@20; test read once per setting",
        "base_params": BASE,
        "eval_steps": EVAL_STEPS,
        "max_steps": args.max_steps,
        "settings": [{"setting": n, "trainer": t, "lrs": lrs} for n, t, lrs in SETTINGS],
        "threads": args.threads,
        "machine": machine_facts(load_before),
        "wall_seconds": time.time() - started,
        "table": format_table(result["rows"]),
        **result,
    }
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
