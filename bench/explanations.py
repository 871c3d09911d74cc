"""Grounded explanations on 500 (user, recommended item) pairs of a movielens run: SmolLM2 beside
the template-only baseline.

The run is a LightGCN bundle on the temporal split with MiniLM text features (trained here once and
reused). Each of 500 users (seeded sample) gets its top recommendation explained from the facts of
`recommendation_facts`. An independent checker, written here and sharing no code with the
explainer's own re-check, reads only the served sentence: it extracts every catalogue title, genre
and tag and every number in it and asks whether the facts hold each one.

- unsupported: share of explanations with any claim the facts do not hold (goal 0);
- fact-mention rate (FMR): share citing at least one true shared fact (a shared genre or tag, or a
  nearest liked title) (goal >= 0.95; PETER+ reached 0.886 on TripAdvisor);
- USR: unique sentences / sentences (goal >= 0.9);
- written by the LLM / by the template, and why the template answered;
- p50 / p95 latency with a cold cache (a fresh one) and a warm one (the same pairs again).

    python bench/explanations.py            # writes bench/results/explanations.json
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from machine import machine_facts
from rich.console import Console
from rich.table import Table

from crossrec.experiment import load_bundle, run_experiment
from crossrec.io import write_json_atomic
from crossrec.llm.base import GenerationCache
from crossrec.llm.explain import EXAMPLES, Explainer, Vocabulary
from crossrec.serve.facts import recommendation_facts
from crossrec.serve.state import ServingState

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "movielens-small"
YEAR = re.compile(r"\(\d{4}\)")


def movielens_run(out: Path) -> Path:
    """The bundle of a LightGCN run on movielens (temporal split, text features), trained once."""
    bundle = out / "explain-lightgcn" / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    config = {
        "name": "explain-lightgcn",
        "output_dir": str(out),
        "threads": 2,
        "dataset": {"format": "movielens", "path": str(DATA), "options": {"posters": False}},
        "encode": {
            "cache_dir": str(ROOT / ".cache" / "embeddings"),
            "models": {
                "text": {"model": "all-MiniLM-L6-v2", "fields": ["title", "genres", "tags", "overview"]},
                "image": None,
                "audio": None,
            },
        },
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [
            {
                "name": "lightgcn",
                "params": {"n_layers": 2, "lr": 0.005, "epochs": 200, "patience": 4, "eval_every": 2},
            }
        ],
        "report": {"plots": False},
    }
    return run_experiment(config, quiet=True).bundle_dir


class Checker:
    """Claims in a served sentence, read from its text alone, against the facts record."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        forms: dict[str, str] = {}
        for title in {str(r["title"]) for r in items if r.get("title")}:
            forms[title] = title
            bare = YEAR.sub("", title).strip()
            if len(bare.split()) > 1:  # a bare title of one word ("Heat") is an ordinary word
                forms.setdefault(bare, title)
        self.forms = forms
        # Longest first, so "Toy Story 2 (1999)" is not read as "Toy Story".
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        self.title_re = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
        self.terms = {
            t.strip().lower()
            for r in items
            for field in ("genres", "tags")
            for t in str(r.get(field) or "").split(",")
            if t.strip()
        }
        self.longest = max((len(t.split()) for t in self.terms), default=1)

    def claims(self, text: str) -> dict[str, list[str]]:
        titles = [self.forms[m.group(0)] for m in self.title_re.finditer(text)]
        rest = self.title_re.sub(" | ", text)
        # Every genre or tag of the catalogue, longest first at each word: "twist ending" is one
        # claim, not also "twist" and "ending"; numbers are read outside titles and terms.
        terms: list[str] = []
        kept: list[str] = []
        for part in rest.lower().split("|"):
            words = [w.strip(".:,") for w in re.findall(r"[\w'&.:-]+", part)]
            i = 0
            while i < len(words):
                for size in range(min(self.longest, len(words) - i), 0, -1):
                    phrase = " ".join(words[i : i + size])
                    if phrase in self.terms:
                        terms.append(phrase)
                        i += size
                        break
                else:
                    kept.append(words[i])
                    i += 1
        numbers = re.findall(r"\d+(?:[.,]\d+)?", " ".join(kept))
        return {"title": titles, "term": terms, "number": numbers}

    def judge(self, text: str, facts: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(unsupported claims, supported shared facts) of one served sentence."""
        liked = {n["title"] for near in facts["nearest_liked"].values() for n in near}
        genres, tags = set(facts["shared"].get("genres", [])), set(facts["shared"].get("tags", []))
        popularity = facts["popularity"]
        numbers = {str(popularity["rank"]), str(popularity["of"]), str(popularity["interactions"])}
        claims = self.claims(text)
        bad, good = [], []
        for title in claims["title"]:
            (good if title in liked else [] if title == facts["title"] else bad).append(f"title {title}")
        # A term that is both a genre and a tag ("comedy") is one claim: a shared attribute.
        for term in set(claims["term"]):
            (good if term in genres | tags else bad).append(f"term {term}")
        bad += [f"number {n}" for n in claims["number"] if n not in numbers]
        return bad, good


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if s.strip()]


def skeleton(text: str, facts) -> str:
    for fact in sorted(facts, key=lambda f: -len(f["value"])):
        text = text.replace(fact["value"], "[*]")
    return re.sub(r"\s+", " ", text.lower()).strip()


EXAMPLE_SKELETONS = {re.sub(r"\[[A-Z]\d?\]", "[*]", a.format(noun="film")).lower() for _, a in EXAMPLES}


def run_system(name: str, explainer: Explainer, pairs, checker: Checker) -> tuple[dict, list[dict]]:
    rows = []
    for facts, about in pairs:
        start = time.perf_counter()
        out = explainer.explain(facts, about)
        seconds = time.perf_counter() - start
        bad, good = checker.judge(out.text, facts)
        ids = {"user_id": facts["user_id"], "item_id": facts["item_id"], "title": facts["title"]}
        rows.append({**out.to_dict(), "seconds": seconds, "unsupported": bad, "supported": good, **ids})
    return summarize(name, rows), rows


def summarize(name: str, rows: list[dict]) -> dict[str, Any]:
    all_sentences = [s for r in rows for s in sentences(r["text"])]
    seconds = np.array([r["seconds"] for r in rows])
    llm = [r for r in rows if r["source"] in ("llm", "cache")]
    frames = [r for r in llm if skeleton(r["text"], r["facts"]) in EXAMPLE_SKELETONS]
    return {
        "system": name,
        "pairs": len(rows),
        "unsupported_share": float(np.mean([bool(r["unsupported"]) for r in rows])),
        "fact_mention_rate": float(np.mean([bool(r["supported"]) for r in rows])),
        "usr": len(set(all_sentences)) / max(len(all_sentences), 1),
        "llm_share": len(llm) / len(rows),
        "template_reasons": dict(Counter(_reason(r["reason"]) for r in rows if r["source"] == "template")),
        "llm_sentences_in_an_example_frame": len(frames) / max(len(llm), 1),
        "p50_ms": 1000 * float(np.percentile(seconds, 50)),
        "p95_ms": 1000 * float(np.percentile(seconds, 95)),
    }


def _reason(reason: str | None) -> str:
    """A template reason without its particulars ("check: names 'x', ..." -> "check: names")."""
    return re.sub(r"\s*('.*|\[.*)$", "", reason or "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "explanations.json")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-explain")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--no-llm", action="store_true", help="the template baseline only")
    args = parser.parse_args()
    load = os.getloadavg()
    console = Console()
    state = ServingState(load_bundle(movielens_run(args.runs)))
    rng = np.random.default_rng(0)
    users = rng.choice(len(state.user_ids), size=min(args.pairs, len(state.user_ids)), replace=False)
    pairs = []
    for user in users:
        user_id = state.user_ids[user]
        item = state.recommend(user_id, k=1)[0][0]
        pairs.append(
            (recommendation_facts(state, user_id, state.item_ids[item]), state.items[item].get("overview"))
        )
    while len(pairs) < args.pairs:  # fewer users than pairs: their second recommendations
        user_id = state.user_ids[users[len(pairs) % len(users)]]
        item = state.recommend(user_id, k=2)[1][0]
        pairs.append(
            (recommendation_facts(state, user_id, state.item_ids[item]), state.items[item].get("overview"))
        )
    vocabulary = Vocabulary.from_items(state.items)
    checker = Checker(state.items)
    results: dict[str, Any] = {"command": "python bench/explanations.py", "pairs": len(pairs)}
    summary, template_rows = run_system(
        "template only", Explainer(None, vocabulary, noun="film"), pairs, checker
    )
    systems = [summary]
    samples: dict[str, list[dict]] = {"template only": template_rows[:10]}
    if not args.no_llm:
        from crossrec.llm.backends import LlamaCppBackend

        llm = LlamaCppBackend(threads=args.threads)
        cache_path = args.runs / "explanations-cache.sqlite"
        cache_path.unlink(missing_ok=True)  # a cold cache: every pair generated here
        for suffix in ("-wal", "-shm"):
            Path(str(cache_path) + suffix).unlink(missing_ok=True)
        explainer = Explainer(llm, vocabulary, GenerationCache(cache_path), noun="film")
        cold, rows = run_system("SmolLM2-135M, cold cache", explainer, pairs, checker)
        warm, _ = run_system("SmolLM2-135M, warm cache", explainer, pairs, checker)
        systems += [cold, warm]
        samples["SmolLM2-135M"] = rows[:10]
        llm.close()
    results["systems"] = systems
    results["samples"] = samples
    results["machine"] = machine_facts(load)
    table = Table(title=f"grounded explanations, {len(pairs)} (user, top item) pairs, movielens-small")
    columns = ("system", "unsupported", "FMR", "USR", "by LLM", "in an example's frame", "p50 ms", "p95 ms")
    for col in columns:
        table.add_column(col)
    for s in systems:
        table.add_row(
            s["system"], f"{s['unsupported_share']:.3f}", f"{s['fact_mention_rate']:.3f}", f"{s['usr']:.3f}",
            f"{s['llm_share']:.3f}", f"{s['llm_sentences_in_an_example_frame']:.3f}", f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
        )  # fmt: skip
    console.print(table)
    for s in systems:
        console.print(s["system"], "template because:", s["template_reasons"])
    for name, rows in samples.items():
        console.print(f"[bold]{name}[/bold]")
        for r in rows:
            console.print(f"  {r['user_id']} / {r['title']}: {r['text']}  [{r['source']}]")
    write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
