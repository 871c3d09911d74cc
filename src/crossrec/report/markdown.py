"""report.md from a run's metrics.json payload, so a saved run can be re-rendered any time."""

from __future__ import annotations

from typing import Any

ACCURACY = ("recall", "ndcg", "precision", "f1", "map", "hit", "mrr")
BEYOND = ("coverage", "novelty", "diversity")
RATING = ("rmse", "mae")


def _cell(stat: dict[str, float] | None, digits: int = 4) -> str:
    if not stat:
        return "–"
    if stat.get("n", 1) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def metric_table(payload: dict[str, Any], split: str = "test", prefix: str = "") -> str:
    """Markdown table: one row per model, mean ± std over seeds for every reported metric, with RMSE and
    MAE where a model predicts ratings. With a `prefix` (the restricted `warm_` / `cold_` rankings) only
    accuracy metrics: coverage and novelty there would still be read against the whole catalogue."""
    ks = payload["protocol"]["ks"]
    reported = set().union(*(model[split] for model in payload["models"].values()))
    if prefix:
        names = [f"{prefix}{m}@{k}" for k in ks for m in ACCURACY]
    else:
        names = [f"{m}@{k}" for k in ks for m in (*ACCURACY, *BEYOND)] + list(RATING)
    columns = [name for name in names if name in reported]
    header = ["model", *(c.removeprefix(prefix) for c in columns), *([] if prefix else ["fit s"])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, model in payload["models"].items():
        cells = [_cell(model[split].get(c), 3 if "novelty" in c else 4) for c in columns]
        if not prefix:
            cells.append(_cell(model["fit_seconds"], 1))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol(payload: dict[str, Any]) -> str:
    """The evaluation protocol in words, so a reader can judge the numbers without the code."""
    d, p = payload["dataset"], payload["protocol"]
    seeds = "[" + ", ".join(str(x) for x in p["seeds"]) + "]"
    selection = p.get("selection_metric", p["monitor"])
    where = {"warm": "warm validation items", "cold": "cold validation items"}.get(p.get("valid_on", "all"))
    if "valid" in p.get("masked_at_test", ["train", "valid"]):
        at_test = "training and validation items are masked at test. "
    else:
        at_test = (
            "only training items are masked at test (MMRec's protocol, eval.protocol: mmrec), so a user's "
            "validation items stay in the ranking and can take top-k places. "
        )
    text = (
        f"Every model is scored against all {d['items']:,} items (full ranking). Items a user met in "
        f"training are masked at validation; {at_test}"
        f"{p['users_evaluated_at_test']:,} users with at least one test item are evaluated. "
    )
    tuning = p.get("tuning")
    if tuning:
        n, sampler = tuning["trials_per_model"], tuning["sampler"]
        if sampler == "grid search":
            budget = f"a grid search, every point of the grid once (budget {n} trials per model)"
        elif " and " in sampler:  # models tuned by different samplers: the search table says which
            budget = f"up to {n} trials per model ({sampler}, per model in the search table)"
        else:
            budget = f"{n} {sampler} trials per model"
        limit = f" (or {tuning['timeout_s']:g} s)" if tuning.get("timeout_s") else ""
        text += (
            f"Hyper-parameters of {', '.join(tuning['models'])} were chosen by {budget}{limit} on the "
            f"validation split only (sampler seed {tuning['seed']}, each trial trained with seed "
            f"{tuning['trial_seed']}, scored by validation {selection}); each chosen configuration was "
            f"then trained with seeds {seeds}. "
        )
    else:
        text += f"Each model is trained with seeds {seeds}. "
    text += (
        f"Epochs and models are chosen by validation {selection}"
        + (f" (ranking among {where} only)" if where else "")
        + " only, and the test split is read once per seed of each model. Tables give mean ± sample "
        "standard deviation over seeds."
    )
    sig = payload.get("significance")
    if sig:
        against = p.get("compared_with") or "runner-up"
        text += (
            f" The best model by validation, {sig['better']}, is compared with the {against} by "
            f"validation, {sig['worse']}, by a one-sided paired t-test and a Wilcoxon signed-rank test "
            f"over the {sig['n_users']:,} test users' {sig['metric']}, each user's value averaged over seeds."
        )
    return text


def _tuning_table(payload: dict[str, Any]) -> str | None:
    """One row per tuned model: what the search chose, its validation score, and its cost."""
    rows = [(label, m["tuning"]) for label, m in payload["models"].items() if m.get("tuning")]
    if not rows:
        return None
    selection = payload["protocol"].get("selection_metric", payload["protocol"]["monitor"])
    lines = [
        f"| model | chosen parameters | best validation {selection} | trials | sampler | search s |",
        "|---|---|---|---|---|---|",
    ]
    for label, tuning in rows:
        chosen = ", ".join(f"{k}={_fmt(v)}" for k, v in tuning["best_params"].items())
        seconds = sum(t["seconds"] for t in tuning["trials"])
        sampler = tuning.get("sampler", "–")  # not recorded by older runs
        lines.append(
            f"| {label} | {chosen} | {tuning['best_value']:.4f} | {len(tuning['trials'])} | {sampler} "
            f"| {seconds:.1f} |"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_report(payload: dict[str, Any]) -> str:
    d, s, p = payload["dataset"], payload["split"], payload["protocol"]
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
        _protocol(payload),
        "",
        "## Test results",
        metric_table(payload, "test"),
    ]
    if p.get("warm_cold"):
        parts += [
            "",
            "## Warm and cold items (test)",
            "Warm: test items seen in training, ranked among warm items only. Cold: test items held out "
            "of training, ranked among the cold items of the test split only.",
            "",
            "Warm items:",
            "",
            metric_table(payload, "test", "warm_"),
            "",
            "Cold items:",
            "",
            metric_table(payload, "test", "cold_"),
        ]
    parts += ["", "## Validation results", metric_table(payload, "valid")]
    tuning = _tuning_table(payload)
    if tuning:
        parts += ["", "## Hyper-parameter search", tuning]
    selection = p.get("selection_metric", p["monitor"])
    parts += [
        "",
        "## Selection and significance",
        f"Ranking by validation {selection}: " + " > ".join(payload["ranking_by_validation"]) + ".",
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
