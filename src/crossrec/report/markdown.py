"""report.md from a run's metrics.json payload, so a saved run can be re-rendered any time."""

from __future__ import annotations

from typing import Any

ACCURACY = ("recall", "ndcg", "precision", "map", "hit", "mrr")
BEYOND = ("coverage", "novelty", "diversity")


def _cell(stat: dict[str, float] | None, digits: int = 4) -> str:
    if not stat:
        return "–"
    if stat.get("n", 1) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def metric_table(payload: dict[str, Any], split: str = "test") -> str:
    """Markdown table: one row per model, mean ± std over seeds for every reported metric."""
    ks = payload["protocol"]["ks"]
    any_model = next(iter(payload["models"].values()))[split]
    columns = [f"{m}@{k}" for k in ks for m in (*ACCURACY, *BEYOND) if f"{m}@{k}" in any_model]
    lines = [
        "| model | " + " | ".join(columns) + " | fit s |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for label, model in payload["models"].items():
        cells = [_cell(model[split].get(c), 3 if c.startswith("novelty") else 4) for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_cell(model['fit_seconds'], 1)} |")
    return "\n".join(lines)


def render_report(payload: dict[str, Any]) -> str:
    d, s, p = payload["dataset"], payload["split"], payload["protocol"]
    seeds = ", ".join(str(x) for x in p["seeds"])
    parts = [
        f"# crossrec report: {payload['name']}",
        "",
        "## Data",
        f"- dataset **{d['name']}**: {d['users']:,} users, {d['items']:,} items, "
        f"{d['interactions']:,} interactions (density {d['density']:.4%})",
        f"- split **{s['name']}**: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}"
        + (f"; {s['cold_items']:,} items held out of training (cold)" if s["cold_items"] else ""),
        *(
            ["- encoded item content:", *[f"  - {line}" for line in payload["ingest"].splitlines()]]
            if payload.get("ingest")
            else []
        ),
        "",
        "## Protocol",
        f"Every model is scored against all {d['items']:,} items (full ranking). Items a user met in "
        "training are masked at validation; training and validation items are masked at test. "
        f"{p['users_evaluated_at_test']:,} users with at least one test item are evaluated. Each model "
        f"is trained with seeds {seeds}; epochs and models are chosen by validation {p['monitor']} "
        "only, and the test split is read once per trained model. Tables give mean ± sample standard "
        "deviation over seeds.",
        "",
        "## Test results",
        metric_table(payload, "test"),
        "",
        "## Validation results",
        metric_table(payload, "valid"),
        "",
        "## Selection and significance",
        f"Ranking by validation {p['monitor']}: " + " > ".join(payload["ranking_by_validation"]) + ".",
    ]
    if payload.get("significance_sentence"):
        parts += [
            "",
            payload["significance_sentence"] + " (One-sided tests on per-user test values, "
            "averaged over seeds.)",
        ]
    if payload.get("plots"):
        parts += ["", "## Plots", *[f"![{name}]({name})" for name in payload["plots"]]]
    return "\n".join(parts) + "\n"
