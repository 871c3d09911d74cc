"""report.md from a run summary (`RunSummary.load` reads a saved metrics.json), so a saved run can be
re-rendered any time."""

from __future__ import annotations

from typing import Any, Literal

from crossrec.report.summary import RunSummary, Stat

ACCURACY = ("recall", "ndcg", "precision", "f1", "map", "hit", "mrr")
BEYOND = ("coverage", "novelty", "diversity")
RATING = ("rmse", "mae")


def _cell(stat: Stat | None, digits: int = 4) -> str:
    if stat is None:
        return "–"
    if stat.n > 1:
        return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}"


def metric_table(summary: RunSummary, split: Literal["test", "valid"] = "test", prefix: str = "") -> str:
    """Markdown table: one row per model, mean ± std over seeds for every reported metric, with RMSE and
    MAE where a model predicts ratings. With a `prefix` (the restricted `warm_` / `cold_` rankings) only
    accuracy metrics: coverage and novelty there would still be read against the whole catalogue."""
    ks = summary.protocol.ks
    tables = {label: m.test if split == "test" else m.valid for label, m in summary.models.items()}
    reported = set().union(*tables.values())
    if prefix:
        names = [f"{prefix}{m}@{k}" for k in ks for m in ACCURACY]
    else:
        names = [f"{m}@{k}" for k in ks for m in (*ACCURACY, *BEYOND)] + list(RATING)
    columns = [name for name in names if name in reported]
    header = ["model", *(c.removeprefix(prefix) for c in columns), *([] if prefix else ["fit s"])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, model in summary.models.items():
        cells = [_cell(tables[label].get(c), 3 if "novelty" in c else 4) for c in columns]
        if not prefix:
            cells.append(_cell(model.fit_seconds, 1))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol(summary: RunSummary) -> str:
    """The evaluation protocol in words, so a reader can judge the numbers without the code."""
    d, p = summary.dataset, summary.protocol
    seeds = "[" + ", ".join(str(x) for x in p.seeds) + "]"
    selection = p.selection_metric
    where = {"warm": "warm validation items", "cold": "cold validation items"}.get(p.valid_on)
    if "valid" in p.masked_at_test:
        at_test = "training and validation items are masked at test. "
    else:
        at_test = (
            "only training items are masked at test (MMRec's protocol, eval.protocol: mmrec), so a user's "
            "validation items stay in the ranking and can take top-k places. "
        )
    text = (
        f"Every model is scored against all {d['items']:,} items (full ranking). Items a user met in "
        f"training are masked at validation; {at_test}"
        f"{p.users_evaluated_at_test:,} users with at least one test item are evaluated. "
    )
    tuning = p.tuning
    if tuning:
        n, sampler = tuning.trials_per_model, tuning.sampler
        if sampler == "grid search":
            budget = f"a grid search, every point of the grid once (budget {n} trials per model)"
        elif " and " in sampler:  # models tuned by different samplers: the search table says which
            budget = f"up to {n} trials per model ({sampler}, per model in the search table)"
        else:
            budget = f"{n} {sampler} trials per model"
        limit = f" (or {tuning.timeout_s:g} s)" if tuning.timeout_s else ""
        text += (
            f"Hyper-parameters of {', '.join(tuning.models)} were chosen by {budget}{limit} on the "
            f"validation split only (sampler seed {tuning.seed}, each trial trained with seed "
            f"{tuning.trial_seed}, scored by validation {selection}); each chosen configuration was "
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
    sig = summary.significance
    if sig:
        against = p.compared_with or "runner-up"
        text += (
            f" The best model by validation, {sig.better}, is compared with the {against} by "
            f"validation, {sig.worse}, by a one-sided paired t-test and a Wilcoxon signed-rank test "
            f"over the {sig.n_users:,} test users' {sig.metric}, each user's value averaged over seeds."
        )
    return text


def _tuning_table(summary: RunSummary) -> str | None:
    """One row per tuned model: what the search chose, its validation score, and its cost."""
    rows = [(label, m.tuning) for label, m in summary.models.items() if m.tuning]
    if not rows:
        return None
    selection = summary.protocol.selection_metric
    lines = [
        f"| model | chosen parameters | best validation {selection} | trials | sampler | search s |",
        "|---|---|---|---|---|---|",
    ]
    for label, tuning in rows:
        chosen = ", ".join(f"{k}={_fmt(v)}" for k, v in tuning.best_params.items())
        seconds = sum(t.seconds for t in tuning.trials)
        sampler = tuning.sampler or "–"  # not recorded by older runs
        lines.append(
            f"| {label} | {chosen} | {tuning.best_value:.4f} | {len(tuning.trials)} | {sampler} "
            f"| {seconds:.1f} |"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_report(summary: RunSummary) -> str:
    """The whole report.md of a run."""
    d, s, p = summary.dataset, summary.split, summary.protocol
    parts = [
        f"# crossrec report: {summary.name}",
        "",
        "## Data",
        f"- dataset **{d['name']}**: {d['users']:,} users, {d['items']:,} items, "
        f"{d['interactions']:,} interactions (density {d['density']:.4%})",
        f"- split **{s['name']}**: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}"
        + (f"; {s['cold_items']:,} items held out of training (cold)" if s["cold_items"] else ""),
        *(
            ["- encoded item content:", *[f"  - {line}" for line in summary.ingest.splitlines()]]
            if summary.ingest
            else []
        ),
        "",
        "## Protocol",
        _protocol(summary),
        "",
        "## Test results",
        metric_table(summary, "test"),
    ]
    if p.warm_cold:
        parts += [
            "",
            "## Warm and cold items (test)",
            "Warm: test items seen in training, ranked among warm items only. Cold: test items held out "
            "of training, ranked among the cold items of the test split only.",
            "",
            "Warm items:",
            "",
            metric_table(summary, "test", "warm_"),
            "",
            "Cold items:",
            "",
            metric_table(summary, "test", "cold_"),
        ]
    parts += ["", "## Validation results", metric_table(summary, "valid")]
    tuning = _tuning_table(summary)
    if tuning:
        parts += ["", "## Hyper-parameter search", tuning]
    parts += [
        "",
        "## Selection and significance",
        f"Ranking by validation {p.selection_metric}: " + " > ".join(summary.ranking_by_validation) + ".",
    ]
    if summary.significance_sentence:
        parts += [
            "",
            summary.significance_sentence + " (One-sided tests on per-user test values, "
            "averaged over seeds.)",
        ]
    if summary.plots:
        parts += ["", "## Plots", *[f"![{name}]({name})" for name in summary.plots]]
    return "\n".join(parts) + "\n"
