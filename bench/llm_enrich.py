"""LLM item enrichment on the movielens cold-item split: cold-item Recall@20 / NDCG@20 with and without
LLM keywords for the items whose text is short (see crossrec.llm.enrich).

    python bench/llm_enrich.py generate --budget-s 3600   # fills .cache/llm/enrich.sqlite (SmolLM2, 1 thread)
    # or one process per core: ... generate --shards 2 --shard 0 & ... generate --shards 2 --shard 1
    python bench/llm_enrich.py evaluate --variant plain    # each variant may run on its own (and early)
    python bench/llm_enrich.py evaluate --variant enriched
    python bench/llm_enrich.py report                      # bench/results/llm_enrich.json + the table

`generate` enriches short-text items in a fixed order until its time budget ends: the cold test
items first, then the cold validation items, then the training items by descending training
interactions; reruns resume from the cache (and skip items whose answer failed before). `evaluate`
reads only the cache (no model): items not generated keep their text. Per model, hyper-parameters
are chosen on validation (seed 0, cold validation items' Recall@20 with content-mapped vectors,
ranked among the cold validation items); the chosen setting is then trained with each seed and
tested once per seed. `report` pairs the two variants user by user.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from dataclasses import replace

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import ttest_rel

from crossrec.config import load_config
from crossrec.data.features import as_feature_set
from crossrec.data.loaders import load_dataset
from crossrec.data.splits import make_split
from crossrec.eval.ranking import evaluator_for
from crossrec.eval.stats import paired_test
from crossrec.experiment import encode_items
from crossrec.io import write_json_atomic
from crossrec.llm.enrich import FIELD, CacheOnly, Enricher, enriched_text, short_text_items
from crossrec.models import build_model
from crossrec.models.base import EmbeddingRecommender

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
CACHE = ROOT / ".cache" / "llm" / "enrich.sqlite"
BACKEND_NAME = "llama.cpp:SmolLM2-135M-Instruct.Q4_1.gguf"
PARTS = ROOT / "bench" / "results" / "llm_enrich_parts"
BASE_FIELDS = ["title", "genres", "tags", "overview"]
TRAINING = {"epochs": 200, "patience": 4, "eval_every": 2}
# Per model: fixed settings and the grid chosen on validation.
MODELS: dict[str, tuple[dict, dict[str, list]]] = {
    "alpharec": (
        {
            "embedding_dim": 64,
            "hidden_dim": 64,
            "n_layers": 2,
            "modalities": ["text", "genres"],
            "n_negatives": 16,
        },
        {"lr": [0.001, 0.003]},
    ),
    "vbpr": ({"embedding_dim": 64, "modalities": ["text", "genres"]}, {"lr": [0.002, 0.005]}),
    "freedom": (
        {
            "embedding_dim": 64,
            "n_layers": 2,
            "modalities": ["text", "genres"],
            "edge_keep": 1.0,
            "modality_loss_weight": 0.1,
        },
        {"lr": [0.005]},
    ),
    "contentknn": ({"feature": "text"}, {}),
}
METRICS = ("recall@20", "ndcg@20")


class Vectors(EmbeddingRecommender):
    """Fixed user and item vectors scored by dot product: the cold items' rows from `embed_items`."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        super().__init__()
        self._u, self._i = torch.as_tensor(users), torch.as_tensor(items)
        self.n_users, self.n_items = len(users), len(items)

    def fit(self, train, item_features=None, valid=None):  # type: ignore[no-untyped-def]
        return self

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._u, self._i


def cold_split(dataset):  # type: ignore[no-untyped-def]
    return make_split(dataset, "cold_item", cold_fraction=0.1, ratios=(0.8, 0.1, 0.1), seed=0)


def enrichment_order(dataset, split) -> list[int]:  # type: ignore[no-untyped-def]
    """Short-text items, the cold test items first (they are what the benchmark ranks), then the cold
    validation items (hyper-parameters are chosen on them), then training items by descending
    training interactions; ties by index."""
    short = np.asarray(short_text_items(dataset), dtype=np.int64)
    test = np.isin(short, np.intersect1d(split.cold_items, split.test.item))
    cold = np.isin(short, split.cold_items)
    counts = np.bincount(split.train.item, minlength=dataset.n_items)
    warm = short[~cold]
    warm = warm[np.lexsort((warm, -counts[warm]))]
    return [*short[test].tolist(), *short[cold & ~test].tolist(), *warm.tolist()]


def generate(args: argparse.Namespace) -> None:
    from crossrec.llm.backends import LlamaCppBackend

    dataset = load_dataset("movielens", args.data)
    order = enrichment_order(dataset, cold_split(dataset))[args.shard :: args.shards]
    llm = LlamaCppBackend(threads=args.threads)
    assert llm.name == BACKEND_NAME, llm.name
    enricher = Enricher(llm, args.cache)
    start, done, sources = time.monotonic(), 0, {"llm": 0, "cache": 0, "template": 0}
    log = args.cache.with_suffix(".log.jsonl")  # one line per model call: who answered, how long
    failed_before = set(_logged(args.cache, "template"))  # temperature 0: it would fail again
    for item in order:
        if item in failed_before:
            continue
        if time.monotonic() - start > args.budget_s:
            break
        result = enricher.enrich(dataset, [item])[0]
        sources[result.source] += 1
        done += 1
        if result.source != "cache":
            line = {"item": item, "source": result.source, "seconds": result.seconds, "reason": result.reason}
            with log.open("a") as f:
                f.write(json.dumps(line) + "\n")
        if done % 100 == 0:
            print(f"{done}/{len(order)} {time.monotonic() - start:.0f}s {sources}", flush=True)
    print(f"done {done}/{len(order)} in {time.monotonic() - start:.0f}s {sources}", flush=True)


def read_enrichments(dataset, split, cache: Path) -> tuple[list, dict]:  # type: ignore[no-untyped-def]
    """Every short-text item's enrichment from the cache alone (a miss: no keywords), and counts."""
    order = enrichment_order(dataset, split)
    results = Enricher(CacheOnly(BACKEND_NAME), cache).enrich(dataset, order)
    generated = [r for r in results if r.source == "cache"]  # the cache holds the model's answers only
    # Attempted: answered (cached) or logged by generate (a failed answer is logged, not cached).
    done = {r.item for r in generated} | set(_logged(cache))
    tried = [i for i in order if i in done]
    attempted = len(tried)
    cold = set(split.cold_items.tolist())
    cold_test = set(np.intersect1d(split.cold_items, split.test.item).tolist())
    counts = {
        "items": dataset.n_items,
        "short_text_items": len(order),
        "short_text_cold_items": sum(i in cold for i in order),
        "short_text_cold_test_items": sum(i in cold_test for i in order),
        "attempted": attempted,
        "attempted_cold": sum(i in cold for i in tried),
        "attempted_cold_test": sum(i in cold_test for i in tried),
        "attempted_cold_valid": sum(i in cold and i not in cold_test for i in tried),
        "attempted_training": sum(i not in cold for i in tried),
        "llm_answered": len(generated),
        "template_failed": attempted - len(generated),  # unparseable / truncated JSON: no keywords
        "llm_share_of_attempted": len(generated) / attempted if attempted else 0.0,
        "with_keywords_after_filter": sum(bool(r.keywords) for r in generated),
        "not_attempted": len(order) - attempted,
        "mean_keywords_kept": float(np.mean([len(r.keywords) for r in generated])) if generated else 0.0,
        "mean_keywords_proposed": float(np.mean([len(r.proposed) for r in generated])) if generated else 0.0,
        **_llm_seconds(cache),
    }
    return results, counts


def _logged(cache: Path, source: str | None = None) -> list[int]:
    """Items generate asked the model about (of one outcome, when `source` is given)."""
    log = cache.with_suffix(".log.jsonl")
    lines = log.read_text().splitlines() if log.is_file() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r["item"] for r in rows if source is None or r["source"] == source]


def _llm_seconds(cache: Path) -> dict:
    """Seconds per model call from generate's log (calls of every outcome)."""
    log = cache.with_suffix(".log.jsonl")
    rows = (
        [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    )
    seconds = [r["seconds"] for r in rows]
    return {
        "logged_model_calls": len(rows),
        "seconds_per_model_call_mean": float(np.mean(seconds)) if seconds else None,
        "seconds_per_model_call_median": float(np.median(seconds)) if seconds else None,
    }


def features_for(dataset, fields: list[str]) -> dict:  # type: ignore[no-untyped-def]
    config = load_config(
        {
            "encode": {
                "cache_dir": str(ROOT / ".cache" / "embeddings"),
                "models": {"text": {"fields": fields}, "image": None, "audio": None},
            }
        }
    )
    encoded = encode_items(config, dataset, quiet=True).features
    return {**as_feature_set(dataset.content.features), **encoded}


def _grid(grid: dict[str, list]) -> list[dict]:
    settings: list[dict] = [{}]
    for name, values in grid.items():
        settings = [{**s, name: v} for s in settings for v in values]
    return settings


def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    console = Console()
    dataset = load_dataset("movielens", args.data)
    split = cold_split(dataset)
    fields = list(BASE_FIELDS)
    part: dict = {"variant": args.variant, "fields": fields}
    if args.variant == "enriched":
        results, counts = read_enrichments(dataset, split, args.cache)
        content = replace(dataset.content, text=enriched_text(dataset, results))
        dataset = replace(dataset, content=content)
        fields.append(FIELD)
        part["enrichment"] = counts
        text = dataset.content.text
        test_items = set(np.intersect1d(split.cold_items, split.test.item).tolist())
        part["generated"] = [
            {
                "item": r.item,
                "movieId": int(dataset.item_ids[r.item]),
                "cold_test": r.item in test_items,
                "input": {f: text[f][r.item] for f in ("title", "genres", "tags")},
                "proposed": list(r.proposed),
                "kept": list(r.keywords),
            }
            for r in results
            if r.source == "cache"
        ]
        console.print(counts)
    start = time.perf_counter()
    features = features_for(dataset, fields)
    part["encode_seconds"] = time.perf_counter() - start
    cold = split.cold_items
    cold_valid = np.intersect1d(cold, split.valid.item)
    cold_test = np.intersect1d(cold, split.test.item)
    valid_eval = evaluator_for(split.valid, split.train, monitor="recall@20")
    select_eval = evaluator_for(
        split.valid.select(np.isin(split.valid.item, cold)), split.train, candidate_items=cold_valid
    )
    among_cold = evaluator_for(split.test, split.train, split.valid, candidate_items=cold_test)
    among_all = evaluator_for(split.test.select(np.isin(split.test.item, cold)), split.train, split.valid)
    cold_features = {n: f.take(cold) for n, f in features.items()}

    def mapped(model):  # type: ignore[no-untyped-def]
        items = model.item_vectors().copy()
        items[cold] = model.embed_items(cold_features)
        return Vectors(model.user_vectors(), items)

    def fit(name: str, setting: dict, seed: int):  # type: ignore[no-untyped-def]
        fixed, _ = MODELS[name]
        extra = TRAINING if name != "contentknn" else {}
        model = build_model(name, seed=seed, **fixed, **extra, **setting)
        model.fit(split.train, features, valid_eval)
        return model

    rows, per_user = [], {}
    for name in args.models:
        _, grid = MODELS[name]
        settings = _grid({**grid, "lr": [args.lr]} if args.lr is not None and "lr" in grid else grid)
        seeds = args.seeds if name != "contentknn" else [0]  # deterministic: one run
        chosen, first = None, None
        if len(settings) > 1:
            scores = []
            for setting in settings:
                start = time.perf_counter()
                model = fit(name, setting, seeds[0])
                seconds = time.perf_counter() - start
                score = select_eval.evaluate(mapped(model)).metrics["recall@20"]
                scores.append({"setting": setting, "valid_cold_recall@20": score, "fit_s": seconds})
                console.print(name, setting, f"valid cold R@20 {score:.4f}")
                if chosen is None or score > chosen[1]:
                    chosen, first = (setting, score), (model, seconds)
            selection = scores
        else:
            chosen, selection = (settings[0], None), []
        for seed in seeds:
            start = time.perf_counter()
            if seed == seeds[0] and first is not None:  # the selection already trained it
                model, seconds = first
            else:
                model = fit(name, chosen[0], seed)
                seconds = time.perf_counter() - start
            vectors = mapped(model)
            row = {
                "model": name,
                "seed": seed,
                "setting": chosen[0],
                "selection": selection,
                "fit_s": seconds,
            }
            for where, evaluator in (("cold", among_cold), ("all", among_all)):
                result = evaluator.evaluate(vectors)  # the test split, once per (model, seed)
                for metric in METRICS:
                    row[f"{metric}_among_{where}"] = result.metrics[metric]
                    per_user[f"{name}/{seed}/{where}/{metric}"] = result.per_user[metric]
                per_user[f"{name}/{seed}/{where}/users"] = result.users
            rows.append(row)
            console.print({k: v for k, v in row.items() if k != "selection"})
            # written after each run, so a process stopped early keeps the runs it finished
            part.update(rows=rows, cold_test_items=len(cold_test), cold_valid_items=len(cold_valid))
            args.parts.mkdir(parents=True, exist_ok=True)
            stem = args.variant + (f"-{args.tag}" if args.tag else "")
            write_json_atomic(args.parts / f"{stem}.json", part)
            np.savez_compressed(args.parts / f"{stem}_per_user.npz", **per_user)


def _sample_std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def report(args: argparse.Namespace) -> None:
    console = Console()
    parts, users = {}, {}
    for variant in ("plain", "enriched"):  # a variant's models may have run in several processes
        files = sorted(args.parts.glob(f"{variant}.json")) + sorted(args.parts.glob(f"{variant}-*.json"))
        pieces = [json.loads(f.read_text()) for f in files]
        parts[variant] = {**pieces[0], "rows": [r for piece in pieces for r in piece["rows"]]}
        users[variant] = {
            k: v for f in files for k, v in np.load(f.with_name(f.stem + "_per_user.npz")).items()
        }
    enriched_models = {r["model"] for r in parts["enriched"]["rows"]}
    models = [m for m in dict.fromkeys(r["model"] for r in parts["plain"]["rows"]) if m in enriched_models]
    summary, tests = [], []
    for name in models:
        entry: dict = {"model": name}
        # only the seeds both variants finished, so means and paired tests cover the same runs
        finished = [{r["seed"] for r in p["rows"] if r["model"] == name} for p in parts.values()]
        common = set.intersection(*finished)
        for variant, part in parts.items():
            runs = [r for r in part["rows"] if r["model"] == name and r["seed"] in common]
            entry[variant] = {
                "setting": runs[0]["setting"] if runs else None,
                "seeds": [r["seed"] for r in runs],
                **{
                    f"{m}_among_{w}": {
                        "mean": float(np.mean([r[f"{m}_among_{w}"] for r in runs])),
                        "std": _sample_std([r[f"{m}_among_{w}"] for r in runs]),
                    }
                    for m in METRICS
                    for w in ("cold", "all")
                },
            }
        seeds = sorted(set(entry["plain"]["seeds"]) & set(entry["enriched"]["seeds"]))
        for where in ("cold", "all"):
            for metric in METRICS:
                a = np.mean([users["enriched"][f"{name}/{s}/{where}/{metric}"] for s in seeds], axis=0)
                b = np.mean([users["plain"][f"{name}/{s}/{where}/{metric}"] for s in seeds], axis=0)
                test = paired_test(f"{metric} among {where}", f"{name}+enriched", a, f"{name}", b)
                two_sided = float(ttest_rel(a, b).pvalue) if not np.allclose(a, b) else 1.0
                tests.append(
                    {
                        **test.__dict__,
                        "p_value_t_two_sided": two_sided,
                        "model": name,
                        "where": where,
                        "metric": metric,
                        "seeds": seeds,
                    }
                )
        summary.append(entry)
    table = Table(
        title="cold test items, movielens cold-item split: plain vs LLM-enriched text (mean over seeds; "
        "diff: per-user mean difference, enriched - plain, two-sided paired t p)"
    )
    columns = ["model", "seeds", "R@20 cold: plain", "enriched", "diff (p)", "N@20 cold: plain"]
    columns += ["enriched", "diff (p)", "R@20 all: plain", "enriched", "N@20 all: plain", "enriched"]
    for col in columns:
        table.add_column(col)
    for entry in summary:
        name = entry["model"]

        def cell(variant: str, key: str, entry: dict = entry) -> str:
            return f"{entry[variant][key]['mean']:.4f}"

        def p(where: str, metric: str, name: str = name) -> str:
            t = next(t for t in tests if t["model"] == name and t["where"] == where and t["metric"] == metric)
            return f"{t['mean_difference']:+.4f} ({t['p_value_t_two_sided']:.2g})"

        table.add_row(
            name,
            str(len(entry["plain"]["seeds"])),
            cell("plain", "recall@20_among_cold"),
            cell("enriched", "recall@20_among_cold"),
            p("cold", "recall@20"),
            cell("plain", "ndcg@20_among_cold"),
            cell("enriched", "ndcg@20_among_cold"),
            p("cold", "ndcg@20"),
            cell("plain", "recall@20_among_all"),
            cell("enriched", "recall@20_among_all"),
            cell("plain", "ndcg@20_among_all"),
            cell("enriched", "ndcg@20_among_all"),
        )
    console.print(table)
    write_json_atomic(
        args.out,
        {
            "command": "python bench/llm_enrich.py generate/evaluate/report (see the module docstring)",
            "split": "movielens cold_item, cold_fraction=0.1, ratios=(0.8, 0.1, 0.1), split seed 0",
            "enrichment": parts["enriched"].get("enrichment"),
            "cold_test_items": parts["plain"]["cold_test_items"],
            # not picked by hand: the first five cold test items in generation order
            "examples": [g for g in parts["enriched"].get("generated", []) if g["cold_test"]][:5],
            "summary": summary,
            "paired_tests_enriched_vs_plain": tests,
            "runs": {v: p["rows"] for v, p in parts.items()},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("generate", "evaluate", "report"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--budget-s", type=float, default=3600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "llm_enrich.json")
    parser.add_argument("--parts", type=Path, default=PARTS, help="where each variant's runs are kept")
    parser.add_argument("--lr", type=float, help="a fixed learning rate instead of the grid (a control)")
    parser.add_argument("--tag", default="", help="a suffix for this process's part files")
    parser.add_argument("--variant", choices=("plain", "enriched"), default="plain")
    parser.add_argument(
        "--models", nargs="+", default=["alpharec", "vbpr", "contentknn"], choices=list(MODELS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shards", type=int, default=1, help="generate: processes side by side")
    parser.add_argument("--shard", type=int, default=0, help="generate: this process's share, 0..shards-1")
    args = parser.parse_args()
    {"generate": generate, "evaluate": evaluate, "report": report}[args.mode](args)


if __name__ == "__main__":
    main()
