"""Tables for docs/results.md from finished `crossrec run` folders: test mean ± std over seeds per
model (and per warm / cold item group when the split has cold items), plus paired tests between any
two models on any metric, read from the run's per_user.npz. Nothing is retrained, nothing re-read.

    python bench/summarize_runs.py runs/movielens-temporal runs/movielens-cold \\
        --metrics recall@20 ndcg@20 cold_recall@20 cold_ndcg@20 \\
        --compare "alpharec>lightgcn@recall@20" "alpharec>content-text@cold_recall@20"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from crossrec.eval.stats import paired_test


def cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def table(run: Path, metrics: list[str]) -> str:
    payload: dict[str, Any] = json.loads((run / "metrics.json").read_text())
    present = [m for m in metrics if any(m in v["test"] for v in payload["models"].values())]
    header = ["model", "valid " + payload["protocol"]["monitor"], *present, "fit s"]
    lines = [
        f"**{payload['name']}** ({payload['split']['name']}; seeds {payload['protocol']['seeds']})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    monitor = payload["protocol"]["monitor"]
    for label, model in payload["models"].items():
        row = [label, cell(model["valid"].get(monitor))]
        row += [cell(model["test"].get(m)) for m in present]
        row.append(f"{model['fit_seconds']['mean']:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    chosen = {label: m["tuning"]["best_params"] for label, m in payload["models"].items() if m.get("tuning")}
    if chosen:
        lines += ["", "Chosen on validation: " + "; ".join(f"{k} {v}" for k, v in chosen.items())]
    return "\n".join(lines)


def compare(run: Path, spec: str) -> str | None:
    """`a>b@metric`: one-sided paired test over the test users of both (means over seeds)."""
    pair, _, metric = spec.partition("@")
    better, _, worse = pair.partition(">")
    path = run / "per_user.npz"
    if not path.is_file():
        return None
    with np.load(path) as per_user:
        keys = (f"{better}|{metric}", f"{worse}|{metric}")
        if not all(k in per_user for k in keys):
            return None
        return paired_test(metric, better, per_user[keys[0]], worse, per_user[keys[1]]).sentence()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20"])
    parser.add_argument(
        "--compare", nargs="*", default=[], help="a>b@metric, e.g. freedom>lightgcn@recall@20"
    )
    args = parser.parse_args(argv)
    for run in args.runs:
        print(table(run, args.metrics))
        for spec in args.compare:
            sentence = compare(run, spec)
            if sentence:
                print(f"\n- {sentence}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
