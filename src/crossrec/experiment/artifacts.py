"""What a finished run writes beside its bundle: metrics.json (the run summary), per_user.npz for
paired tests after the run, report.md, plots and TensorBoard curves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from crossrec.config import Config
from crossrec.data.schema import Dataset, Split
from crossrec.eval.ranking import MASKED_AT_TEST
from crossrec.eval.stats import mean_std
from crossrec.experiment.protocol import Protocol, opponent, selection_prefix, significance
from crossrec.experiment.tuning import TuneResult
from crossrec.experiment.units import FitResult
from crossrec.io import atomic_path
from crossrec.report.plots import plot_metric_comparison, plot_training_curves
from crossrec.report.summary import (
    ModelSummary,
    ModelTuning,
    ProtocolSummary,
    RunSummary,
    SeedRun,
    Stat,
    TuningProtocol,
    stats,
)


def mean_per_user(runs: list[FitResult], label: str, metric: str) -> np.ndarray:
    return np.mean([r.test_per_user[metric] for r in runs if r.label == label], axis=0)


def summarise(
    config: Config,
    dataset: Dataset,
    split: Split,
    runs: list[FitResult],
    tuned: dict[str, TuneResult],
    protocol: Protocol,
    ingest: str | None = None,
) -> RunSummary:
    """The run summary (metrics.json): every model's settings, tuning, metrics per seed and mean ±
    std, the ranking by validation and the paired test of the best model."""
    monitor = config.eval.monitor
    selection_metric = selection_prefix(config) + monitor
    models: dict[str, ModelSummary] = {}
    for model_cfg in config.models:
        label = model_cfg.display_name
        mine = [r for r in runs if r.label == label]
        tuning = tuned.get(label)
        models[label] = ModelSummary(
            label=label,
            model=model_cfg.name,
            params={**model_cfg.params, **(tuning.best_params if tuning else {})},
            baseline=model_cfg.baseline,
            tuning=ModelTuning.from_dict(tuning.to_dict()) if tuning else None,
            valid=stats(mean_std([r.valid for r in mine])),
            test=stats(mean_std([r.test for r in mine])),
            fit_seconds=stats(mean_std([{"fit_seconds": r.fit_seconds} for r in mine]))["fit_seconds"],
            runs=[SeedRun(r.seed, r.valid, r.test, r.fit_seconds, len(r.history), r.history) for r in mine],
        )
    # Selection reads validation only; the test columns are reported, never used to choose.
    unranked = Stat(-np.inf, 0.0, 0)
    ranking = sorted(models, key=lambda m: models[m].valid.get(selection_metric, unranked).mean, reverse=True)
    against = opponent(config, ranking)
    test = None
    if against is not None:
        per_user = {label: mean_per_user(runs, label, selection_metric) for label in (ranking[0], against[0])}
        test = significance(per_user, ranking[0], against[0], selection_metric)
    samplers = dict.fromkeys(t.sampler for t in tuned.values())
    return RunSummary(
        name=config.name,
        dataset=dataset.summary(),
        split=split.summary(),
        protocol=ProtocolSummary(
            eval_protocol=config.eval.protocol,
            masked_at_test=list(MASKED_AT_TEST[config.eval.protocol]),
            users_evaluated_at_test=len(protocol.test[""].users),
            ks=config.eval.ks,
            monitor=monitor,
            valid_on=config.eval.valid_on,
            selection_metric=selection_metric,
            seeds=config.seeds,
            warm_cold=bool(len(split.cold_items)),
            tuning=TuningProtocol(
                sampler=" and ".join(samplers),
                trials_per_model=config.tune.trials,
                seed=config.tune.seed,
                timeout_s=config.tune.timeout_s,
                trial_seed=config.seeds[0],
                models=list(tuned),
            )
            if tuned
            else None,
            compared_with=against[1] if against else None,
        ),
        models=models,
        ranking_by_validation=ranking,
        significance=test,
        significance_sentence=test.sentence() if test else None,
        ingest=ingest,
    )


def write_per_user(runs: list[FitResult], protocol: Protocol, path: Path) -> None:
    """Per-user test values (mean over seeds) under `label|metric`, and the evaluated users under
    `users|prefix`: any two models can be compared by a paired test after the run, on any metric."""
    arrays = {f"users|{prefix}": ev.users for prefix, ev in protocol.test.items()}
    for label in dict.fromkeys(r.label for r in runs):
        first = next(r for r in runs if r.label == label)
        for metric in first.test_per_user:
            arrays[f"{label}|{metric}"] = mean_per_user(runs, label, metric)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_plots_and_curves(
    config: Config, runs: list[FitResult], summary: RunSummary, run_dir: Path
) -> RunSummary:
    """The PNG plots and TensorBoard curves the config asks for; the summary names the plots drawn."""
    first_seed = {r.label: r.history for r in runs if r.seed == config.seeds[0]}
    if config.report.plots:
        curves = plot_training_curves(first_seed, config.eval.monitor, run_dir / "training_curves.png")
        shown = [
            f"{m}@{k}"
            for m in ("recall", "ndcg", "precision", "f1", "map", "hit", "mrr")
            for k in config.eval.ks[-1:]
        ]
        bars = plot_metric_comparison(
            {label: m.test for label, m in summary.models.items()}, shown, run_dir / "metric_comparison.png"
        )
        summary = replace(summary, plots=[p.name for p in (curves, bars) if p is not None])
    if config.report.tensorboard:
        from crossrec.report.tensorboard import write_tensorboard

        write_tensorboard({f"{r.label}/seed{r.seed}": r.history for r in runs}, run_dir / "tensorboard")
    return summary


def split_line(split: Split) -> str:
    s = split.summary()
    cold = f", {s['cold_items']:,} cold items" if s["cold_items"] else ""
    return f"split {s['name']}: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}{cold}"
