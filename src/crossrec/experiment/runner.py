"""A run, as the CLI and the Python API execute it: dataset -> split -> item features -> units of
work (tuning trials, then a fit per seed) on an executor -> summary, report and run bundle.

Every finished unit is recorded in the run folder (`ledger.py`), so `resume_experiment(run_dir)`
(`crossrec run --resume RUN_DIR`) continues an interrupted run from its own config and split and
reaches the metrics the uninterrupted run would have: recorded units are read back, not retrained,
and the rest are deterministic functions of their seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crossrec.align.stage import align_features
from crossrec.config import Config, ModelConfig, load_config
from crossrec.data.features import ItemFeatures, as_feature_set
from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Dataset, Interactions, Split
from crossrec.data.splits import make_split
from crossrec.encoders.build import EncodeResult, encode_dataset
from crossrec.errors import ConfigError
from crossrec.experiment.artifacts import split_line, summarise, write_per_user, write_plots_and_curves
from crossrec.experiment.bundle import write_bundle
from crossrec.experiment.executor import Executor, LocalExecutor
from crossrec.experiment.ledger import Ledger
from crossrec.experiment.tuning import TuneResult, tune_model
from crossrec.experiment.units import (
    FitResult,
    FitUnit,
    RunContext,
    TrialUnit,
    file_slug,
    run_fit,
    run_trial,
)
from crossrec.io import atomic_path, write_json_atomic, write_text_atomic
from crossrec.report.markdown import render_report
from crossrec.report.summary import RunSummary


@dataclass
class ExperimentResult:
    config: Config
    run_dir: Path
    runs: list[FitResult]
    summary: RunSummary
    bundle_dir: Path | None


def encode_items(
    config: Config,
    dataset: Dataset,
    *,
    quiet: bool = False,
    ray_address: str | None = None,
    ray_actors: int | None = None,
) -> EncodeResult:
    """Encode the configured modalities into the cache (the `encode` section); with `ray_address`,
    the networks run on that Ray cluster (`ray_actors` actors per modality; default: one per CPU)
    and this process writes the same cache (encoders/on_ray.py)."""
    if config.encode is None:
        raise ConfigError("the config has no `encode` section: nothing to encode")
    if ray_address is not None:
        from crossrec.encoders.on_ray import encode_dataset_on_ray

        return encode_dataset_on_ray(
            dataset,
            config.encode.models,
            config.encode.cache_dir,
            address=ray_address,
            concurrency=ray_actors,
            threads=config.encode.threads,
            progress=not quiet,
            max_items=config.encode.max_items,
        )
    return encode_dataset(
        dataset,
        config.encode.models,
        config.encode.cache_dir,
        threads=config.encode.threads,
        progress=not quiet,
        max_items=config.encode.max_items,
    )


def run_experiment(
    config: Config | str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    quiet: bool = False,
    executor: Executor | None = None,
    extra: tuple[np.ndarray, Interactions] | None = None,
) -> ExperimentResult:
    """Run every configured model with every seed; select on validation, test once per (model, seed).
    `extra` = (new user ids, interactions) joins the dataset before the split (events logged while
    serving, for a retrain); it is kept in the run folder, so a resumed run sees it too."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    elif overrides:
        config = load_config(config.model_dump(mode="json"), overrides)
    return _execute(config, executor or LocalExecutor(), quiet=quiet, resume=False, extra=extra)


def resume_experiment(
    run_dir: str | Path, *, quiet: bool = False, executor: Executor | None = None
) -> ExperimentResult:
    """Continue the run in `run_dir` from its saved config and split, skipping finished units."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "split.npz").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml and split.npz to resume from)")
    config = load_config(run_dir / "config.yaml", [f"output_dir={run_dir.parent}", f"name={run_dir.name}"])
    return _execute(config, executor or LocalExecutor(), quiet=quiet, resume=True)


def _execute(
    config: Config,
    executor: Executor,
    *,
    quiet: bool,
    resume: bool,
    extra: tuple[np.ndarray, Interactions] | None = None,
) -> ExperimentResult:
    console = Console(quiet=quiet, highlight=False)
    if config.threads:
        torch.set_num_threads(config.threads)
    labels = [m.display_name for m in config.models]
    if len(set(labels)) != len(labels):
        raise ConfigError("two models share a name: give each a distinct `label`")
    if len({file_slug(label) for label in labels}) != len(labels):
        raise ConfigError(f"model labels {labels} collide as file names: use letters, digits, '.', '-', '_'")
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.dataset.format, config.dataset.path, **config.dataset.options)
    extra_path = run_dir / "extra_interactions.npz"
    if extra is not None:
        _save_extra(extra_path, *extra)
    elif resume and extra_path.exists():
        extra = _load_extra(extra_path)
    if extra is not None:
        dataset = dataset.with_interactions(*extra)
    if resume:
        split = Split.load(run_dir / "split.npz")
    else:
        write_text_atomic(run_dir / "config.yaml", config.to_yaml())
        split = make_split(
            dataset,
            config.split.method,
            seed=config.split.seed,
            ratios=config.split.ratios,
            holdout=config.split.holdout,
            cold_fraction=config.split.cold_fraction,
        )
        split.save(run_dir / "split.npz")
    features, ingest = _item_features(config, dataset, run_dir, console, quiet)
    heads = None
    if config.align is not None:
        aligned = align_features(features, config.align)
        heads = aligned.space.save(run_dir / "shared_space.pt")
        write_json_atomic(
            run_dir / "shared_space.json", {"chosen": aligned.chosen, "candidates": aligned.candidates}
        )
        features.update(aligned.features)
        console.print(f"shared space: {', '.join(aligned.features)} (candidate {aligned.chosen} chosen)")
    console.print(
        f"[bold]{dataset.name}[/]: {dataset.n_users:,} users, {dataset.n_items:,} items; " + split_line(split)
    )
    ctx = RunContext(config, split, features)
    ledger = Ledger(run_dir, resume=resume)
    runs, tuned = _run_units(config, ctx, ledger, executor, console, quiet)

    summary = summarise(config, dataset, split, runs, tuned, ctx.protocol, ingest)
    summary = write_plots_and_curves(config, runs, summary, run_dir)
    write_json_atomic(run_dir / "metrics.json", summary.to_dict())
    write_per_user(runs, ctx.protocol, run_dir / "per_user.npz")
    write_text_atomic(run_dir / "report.md", render_report(summary))
    bundle_dir = None
    if config.bundle.write:
        bundle_dir = write_bundle(run_dir / "bundle", config, dataset, split, features, runs, summary, heads)
    console.print(f"report written to [bold]{run_dir / 'report.md'}[/]")
    return ExperimentResult(config, run_dir, runs, summary, bundle_dir)


def _save_extra(path: Path, new_user_ids: np.ndarray, inter: Interactions) -> None:
    arrays = {"new_user_ids": np.asarray(new_user_ids, dtype=str), "user": inter.user, "item": inter.item}
    arrays.update(value=inter.value, shape=np.array([inter.n_users, inter.n_items]))
    if inter.timestamp is not None:
        arrays["timestamp"] = inter.timestamp
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_extra(path: Path) -> tuple[np.ndarray, Interactions]:
    with np.load(path, allow_pickle=False) as z:
        n_users, n_items = (int(x) for x in z["shape"])
        ts = z["timestamp"] if "timestamp" in z.files else None
        return z["new_user_ids"], Interactions(z["user"], z["item"], z["value"], n_users, n_items, ts)


def _item_features(
    config: Config, dataset: Dataset, run_dir: Path, console: Console, quiet: bool
) -> tuple[dict[str, ItemFeatures], str | None]:
    """The dataset's own feature matrices, plus what the `encode` section's encoders produce."""
    features = as_feature_set(dataset.content.features)
    if config.encode is None:
        return features, None
    encoded = encode_items(config, dataset, quiet=quiet)
    encoded.report.save(run_dir / "ingest_report.json")
    ingest = encoded.report.summary()
    console.print(ingest)
    features.update(encoded.features)
    return features, ingest


def _run_units(
    config: Config, ctx: RunContext, ledger: Ledger, executor: Executor, console: Console, quiet: bool
) -> tuple[list[FitResult], dict[str, TuneResult]]:
    runs: list[FitResult] = []
    tuned: dict[str, TuneResult] = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("models x seeds", total=len(config.models) * len(config.seeds))
        for model_cfg in config.models:
            label, params = model_cfg.display_name, dict(model_cfg.params)
            if model_cfg.search:
                progress.update(task, description=f"{label} (tuning)")
                tuned[label] = _tune(config, model_cfg, ctx, ledger, executor)
                params.update(tuned[label].best_params)
            units = [FitUnit(label, model_cfg.name, params, seed) for seed in config.seeds]
            done = {u.id: r for u in units if (r := ledger.fit(u)) is not None}
            progress.update(task, description=f"{label} (seeds)", advance=len(done))
            for unit, result in executor.map(run_fit, ctx, [u for u in units if u.id not in done]):
                ledger.record_fit(unit, result)
                done[unit.id] = result
                progress.advance(task)
            runs.extend(done[u.id] for u in units)
    return runs, tuned


def _tune(
    config: Config, model_cfg: ModelConfig, ctx: RunContext, ledger: Ledger, executor: Executor
) -> TuneResult:
    """Optuna over the model's search space; each trial trains with the first seed and is scored on
    validation, so the test split plays no part in choosing hyper-parameters."""
    label, seed = model_cfg.display_name, config.seeds[0]

    def unit(params: dict[str, Any], number: int) -> TrialUnit:
        return TrialUnit(label, model_cfg.name, params, seed, number)

    history = ledger.trials(unit({}, 0))
    numbered = iter(range(len(history), config.tune.trials))

    def fit_and_validate(params: dict[str, Any]) -> float:
        trial = unit(params, next(numbered))
        return next(executor.map(run_trial, ctx, [trial]))[1]

    return tune_model(
        model_cfg,
        config.tune,
        fit_and_validate,
        history=history,
        on_trial=lambda record: ledger.record_trial(unit({}, record.number), record),
    )
