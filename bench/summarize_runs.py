"""Tables for docs/results.md from finished `crossrec run` folders: test mean ± std over seeds per
model (and per warm / cold item group when the split has cold items), plus paired tests between any
two models on any metric, read from the run's per_user.npz. Nothing is retrained, nothing re-read.

    python bench/summarize_runs.py runs/movielens-temporal runs/movielens-cold \\
        --metrics recall@20 ndcg@20 cold_recall@20 cold_ndcg@20 \\
        --compare "alpharec>lightgcn@recall@20" "alpharec>content-text@cold_recall@20"

Models of different runs are compared with `--across RUN:LABEL>RUN:LABEL@METRIC`, once their
split.npz files are found to hold the same split and their test evaluation the same protocol:

    python bench/summarize_runs.py --across "runs/tiktok-a:freedom>runs/tiktok-b:lightgcn@recall@20"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crossrec.data.schema import Split
from crossrec.eval.stats import PairedTest, paired_test
from crossrec.report.summary import RunSummary, Stat


def cell(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    return f"{stat.mean:.4f} ± {stat.std:.4f}"


def table(run: Path, metrics: list[str]) -> str:
    summary = RunSummary.load(run / "metrics.json")
    present = [m for m in metrics if any(m in v.test for v in summary.models.values())]
    monitor = summary.protocol.monitor
    header = ["model", "valid " + monitor, *present, "fit s"]
    lines = [
        f"**{summary.name}** ({summary.split['name']}; seeds {summary.protocol.seeds})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for label, model in summary.models.items():
        row = [label, cell(model.valid.get(monitor))]
        row += [cell(model.test.get(m)) for m in present]
        row.append(f"{model.fit_seconds.mean:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    chosen = {label: m.tuning.best_params for label, m in summary.models.items() if m.tuning}
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


def _pair_keys(split: Split, part: str) -> np.ndarray:
    inter = getattr(split, part)
    return np.sort(inter.user.astype(np.int64) * split.n_items + inter.item)


def check_same_split(run_a: Path, run_b: Path) -> None:
    """Refuse a paired test between runs whose users, targets or masks differ: same shape, the same
    (user, item) pairs in train, valid and test, the same cold items, the same test protocol."""
    a, b = Split.load(run_a / "split.npz"), Split.load(run_b / "split.npz")
    where = f"{run_a} and {run_b} hold different splits"
    if (a.n_users, a.n_items) != (b.n_users, b.n_items):
        raise ValueError(f"{where}: {a.n_users} x {a.n_items} vs {b.n_users} x {b.n_items} users x items")
    for part in ("train", "valid", "test"):
        if not np.array_equal(_pair_keys(a, part), _pair_keys(b, part)):
            raise ValueError(f"{where} ({a.name} vs {b.name}): their {part} interactions differ")
    if not np.array_equal(np.sort(a.cold_items), np.sort(b.cold_items)):
        raise ValueError(f"{where} ({a.name} vs {b.name}): their cold items differ")
    masked = [RunSummary.load(run / "metrics.json").protocol.masked_at_test for run in (run_a, run_b)]
    if masked[0] != masked[1]:
        raise ValueError(
            f"{run_a} masks {', '.join(masked[0])} at test and {run_b} {', '.join(masked[1])} "
            "(eval.protocol differs): their per-user values do not measure the same task"
        )


def _per_user(run: Path, label: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A model's per-user test values of `metric` and the users they belong to (`users|<prefix>`)."""
    prefix = next((p for p in ("warm_", "cold_") if metric.startswith(p)), "")
    with np.load(run / "per_user.npz") as per_user:
        key = f"{label}|{metric}"
        if key not in per_user:
            found = sorted({k.partition("|")[0] for k in per_user if not k.startswith("users|")})
            raise ValueError(f"{run / 'per_user.npz'} has no '{key}' (models: {', '.join(found)})")
        return per_user[f"users|{prefix}"], per_user[key]


def compare_across(spec: str) -> PairedTest:
    """`RUN_A:LABEL_A>RUN_B:LABEL_B@METRIC`: one-sided paired test of two models from two run folders
    over the same test users, after checking both runs evaluated the same split the same way."""
    pair, _, metric = spec.partition("@")
    better, _, worse = pair.partition(">")
    (run_a, _, label_a), (run_b, _, label_b) = better.rpartition(":"), worse.rpartition(":")
    if not (metric and run_a and label_a and run_b and label_b):
        raise ValueError(f"'{spec}' must look like RUN:LABEL>RUN:LABEL@METRIC")
    check_same_split(Path(run_a), Path(run_b))
    users_a, a = _per_user(Path(run_a), label_a, metric)
    users_b, b = _per_user(Path(run_b), label_b, metric)
    if not np.array_equal(users_a, users_b):
        raise ValueError(f"{run_a} and {run_b} evaluated different test users on {metric}")
    return paired_test(metric, f"{label_a} ({Path(run_a).name})", a, f"{label_b} ({Path(run_b).name})", b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20"])
    parser.add_argument(
        "--compare", nargs="*", default=[], help="a>b@metric, e.g. freedom>lightgcn@recall@20"
    )
    parser.add_argument(
        "--across", nargs="*", default=[], help="RUN:LABEL>RUN:LABEL@METRIC, models of two runs on one split"
    )
    args = parser.parse_args(argv)
    if not args.runs and not args.across:
        parser.error("give run folders, --across comparisons, or both")
    for spec in args.across:
        try:
            print(f"- {compare_across(spec).sentence()}")
        except (ValueError, OSError) as exc:
            parser.exit(2, f"error: {exc}\n")
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
