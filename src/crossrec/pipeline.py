"""dataset -> split -> models -> evaluation -> report, as one call (the CLI and Python API share it)."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crossrec.config import Config, ModelConfig, load_config
from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Dataset, Interactions, ItemContent, Split
from crossrec.data.splits import make_split
from crossrec.encoders.build import EncodeResult, encode_dataset
from crossrec.errors import ConfigError
from crossrec.eval.ranking import MASKED_AT_TEST, RankingEvaluator, evaluator_for
from crossrec.eval.rating import RatingValidator, rating_errors
from crossrec.eval.stats import PairedTest, mean_std, paired_test
from crossrec.io import atomic_path, write_json_atomic, write_text_atomic
from crossrec.models import build_model
from crossrec.models.base import Recommender, Validator
from crossrec.report.markdown import render_report
from crossrec.report.plots import plot_metric_comparison, plot_training_curves
from crossrec.tuning import TuneResult, tune_model


@dataclass
class ModelRun:
    """One model trained with one seed: validation and test metrics plus what training recorded."""

    label: str
    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    history: list[dict[str, float]]
    test_per_user: dict[str, np.ndarray] = field(repr=False)


@dataclass
class ExperimentResult:
    config: Config
    run_dir: Path
    runs: list[ModelRun]
    payload: dict[str, Any]

    @property
    def test_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {label: m["test"] for label, m in self.payload["models"].items()}


def _console(quiet: bool) -> Console:
    return Console(quiet=quiet, highlight=False)


def _build(name: str, params: dict[str, Any], seed: int) -> Any:
    from crossrec.models import MODELS

    params = dict(params)
    cls = MODELS.get(name)
    if cls is not None and "seed" in inspect.signature(cls.__init__).parameters:
        params.setdefault("seed", seed)
    return build_model(name, **params)


def _item_vectors(features: dict[str, np.ndarray], name: str | None) -> np.ndarray | None:
    if name is None:
        return None
    if name not in features:
        known = ", ".join(sorted(features)) or "none"
        raise ConfigError(
            f"eval.diversity_features '{name}' is not an item feature of the run (has: {known})"
        )
    return features[name]


def _items_to_encode(config: Config, dataset: Dataset) -> np.ndarray:
    """All items, or the `max_items` most-interacted ones (ties by index) for a quick slice."""
    limit = config.encode.max_items if config.encode else None
    if limit is None or limit >= dataset.n_items:
        return np.arange(dataset.n_items)
    counts = dataset.interactions.item_counts()
    return np.sort(np.argsort(-counts, kind="stable")[:limit])


def _content_subset(dataset: Dataset, rows: np.ndarray) -> Dataset:
    c = dataset.content
    pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
    content = ItemContent(
        text={k: pick(v) for k, v in c.text.items()}, image=pick(c.image), audio=pick(c.audio)
    )
    empty = Interactions([], [], [], dataset.n_users, len(rows))
    return Dataset(dataset.name, dataset.user_ids, dataset.item_ids[rows], empty, content)


def encode_items(config: Config, dataset: Dataset, *, quiet: bool = False) -> EncodeResult:
    """Encode the configured modalities into the cache; vectors come back for every item (zero rows
    and `present` False where an item was outside the slice, had no input, or was skipped)."""
    if config.encode is None:
        raise ConfigError("the config has no `encode` section: nothing to encode")
    rows = _items_to_encode(config, dataset)
    subset = dataset if len(rows) == dataset.n_items else _content_subset(dataset, rows)
    result = encode_dataset(
        subset,
        config.encode.models,
        config.encode.cache_dir,
        threads=config.encode.threads,
        progress=not quiet,
    )
    if subset is dataset:
        return result
    vectors, present = {}, {}
    for name, matrix in result.vectors.items():
        vectors[name] = np.zeros((dataset.n_items, matrix.shape[1]), dtype=np.float32)
        vectors[name][rows] = matrix
        present[name] = np.zeros(dataset.n_items, dtype=bool)
        present[name][rows] = result.present[name]
    return EncodeResult(vectors, present, result.report)


def run_experiment(
    config: Config | str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    quiet: bool = False,
) -> ExperimentResult:
    """Run every configured model with every seed; select on validation, test once per run."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    elif overrides:
        config = load_config(config.model_dump(mode="json"), overrides)
    console = _console(quiet)
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", config.to_yaml())

    dataset = load_dataset(config.dataset.format, config.dataset.path, **config.dataset.options)
    split = make_split(
        dataset,
        config.split.method,
        seed=config.split.seed,
        ratios=config.split.ratios,
        holdout=config.split.holdout,
        cold_fraction=config.split.cold_fraction,
    )
    split.save(run_dir / "split.npz")
    features = dict(dataset.content.features)
    ingest = None
    if config.encode is not None:
        encoded = encode_items(config, dataset, quiet=quiet)
        encoded.report.save(run_dir / "ingest_report.json")
        ingest = encoded.report.summary()
        console.print(ingest)
        features.update(encoded.vectors)
    console.print(
        f"[bold]{dataset.name}[/]: {dataset.n_users:,} users, {dataset.n_items:,} items; "
        + _split_line(split)
    )

    valid_evals, test_evals = _evaluators(config, split, features)
    selector = _selector(config, valid_evals)
    runs: list[ModelRun] = []
    tuned: dict[str, TuneResult] = {}
    labels = [m.display_name for m in config.models]
    if len(set(labels)) != len(labels):
        raise ConfigError("two models share a name: give each a distinct `label`")
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
            params = dict(model_cfg.params)
            if model_cfg.search:
                progress.update(task, description=f"{model_cfg.display_name} (tuning)")
                tuned[model_cfg.display_name] = _tune(config, model_cfg, split, features, selector, quiet)
                params.update(tuned[model_cfg.display_name].best_params)
            for seed in config.seeds:
                progress.update(task, description=f"{model_cfg.display_name} (seed {seed})")
                model = _build(model_cfg.name, params, seed)
                start = time.perf_counter()
                model.fit(split.train, features or None, _validator_for(model, selector, split, config))
                fit_seconds = time.perf_counter() - start
                valid_metrics, _ = _read(valid_evals, model, split.valid, config.eval.batch_size)
                # The one read of the test split for this run (warm and cold items are subsets of it).
                test_metrics, per_user = _read(test_evals, model, split.test, config.eval.batch_size)
                runs.append(
                    ModelRun(
                        model_cfg.display_name,
                        seed,
                        valid_metrics,
                        test_metrics,
                        fit_seconds,
                        list(model.history),
                        per_user,
                    )
                )
                progress.advance(task)

    payload = _summarise(config, dataset, split, runs, tuned, test_evals[""].users)
    payload["ingest"] = ingest
    _write_plots_and_curves(config, runs, payload, run_dir)
    write_json_atomic(run_dir / "metrics.json", payload)
    _write_per_user(runs, test_evals, run_dir / "per_user.npz")
    write_text_atomic(run_dir / "report.md", render_report(payload))
    console.print(f"report written to [bold]{run_dir / 'report.md'}[/]")
    return ExperimentResult(config, run_dir, runs, payload)


def _evaluators(
    config: Config, split: Split, features: dict[str, np.ndarray]
) -> tuple[dict[str, RankingEvaluator], dict[str, RankingEvaluator]]:
    """Validation and test evaluators keyed by metric prefix. '' ranks among all items; when the split
    holds cold items, 'warm_' ranks warm targets among warm items and 'cold_' ranks cold targets among
    the cold items of that split, so a cold-start model is judged on what it was built for."""
    common: dict[str, Any] = {
        "ks": config.eval.ks,
        "monitor": config.eval.monitor,
        "batch_size": config.eval.batch_size,
        "protocol": config.eval.protocol,
    }
    vectors = _item_vectors(features, config.eval.diversity_features)
    valid = {"": evaluator_for(split.valid, split.train, **common)}
    test = {"": evaluator_for(split.test, split.train, split.valid, item_vectors=vectors, **common)}
    cold = split.cold_items
    if len(cold):
        warm = np.setdiff1d(np.arange(split.train.n_items), cold)
        valid["warm_"] = evaluator_for(split.valid, split.train, candidate_items=warm, **common)
        valid["cold_"] = evaluator_for(
            split.valid, split.train, candidate_items=np.intersect1d(cold, split.valid.item), **common
        )
        test["warm_"] = evaluator_for(
            split.test, split.train, split.valid, candidate_items=warm, item_vectors=vectors, **common
        )
        test["cold_"] = evaluator_for(
            split.test,
            split.train,
            split.valid,
            candidate_items=np.intersect1d(cold, split.test.item),
            item_vectors=vectors,
            **common,
        )
    return valid, test


def _selection_prefix(config: Config) -> str:
    return "" if config.eval.valid_on == "all" else f"{config.eval.valid_on}_"


def _selector(config: Config, valid_evals: dict[str, RankingEvaluator]) -> RankingEvaluator:
    """The validation evaluator that early stopping, tuning and model selection read (`eval.valid_on`)."""
    prefix = _selection_prefix(config)
    if prefix not in valid_evals:
        raise ConfigError(
            f"eval.valid_on={config.eval.valid_on} needs a split with cold items (split.method: cold_item)"
        )
    if not len(valid_evals[prefix].users):
        raise ConfigError(f"eval.valid_on={config.eval.valid_on}: no validation user has such an item")
    return valid_evals[prefix]


def _validator_for(model: Recommender, selector: RankingEvaluator, split: Split, config: Config) -> Validator:
    """What early stopping and tuning maximise: the ranking monitor, or validation RMSE for a model
    that predicts ratings."""
    if model.predicts_ratings:
        return RatingValidator(selector, split.valid, config.eval.batch_size)
    return selector


def _tune(
    config: Config,
    model_cfg: ModelConfig,
    split: Split,
    features: dict[str, np.ndarray],
    selector: RankingEvaluator,
    quiet: bool,
) -> TuneResult:
    """Optuna over the model's search space; each trial trains with the first seed and is scored on
    validation (the selector), so the test split plays no part in choosing hyper-parameters."""

    def fit_and_validate(params: dict[str, Any]) -> float:
        model = _build(model_cfg.name, params, config.seeds[0])
        valid = _validator_for(model, selector, split, config)
        model.fit(split.train, item_features=features or None, valid=valid)
        return valid(model)[valid.monitor]

    return tune_model(model_cfg, config.tune, fit_and_validate, quiet=quiet)


def _read(
    evaluators: dict[str, RankingEvaluator], model: Any, target: Interactions, batch_size: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every evaluator's metrics and per-user values under its prefix, plus RMSE and MAE on `target`
    for a model that predicts ratings."""
    metrics: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    for prefix, evaluator in evaluators.items():
        result = evaluator.evaluate(model)
        metrics.update({prefix + name: value for name, value in result.metrics.items()})
        per_user.update({prefix + name: values for name, values in result.per_user.items()})
    if model.predicts_ratings:
        metrics.update(rating_errors(model, target, batch_size))
    return metrics, per_user


def _write_per_user(runs: list[ModelRun], test_evals: dict[str, RankingEvaluator], path: Path) -> None:
    """Per-user test values (mean over seeds) under `label|metric`, and the evaluated users under
    `users|prefix`: any two models can be compared by a paired test after the run, on any metric."""
    arrays = {f"users|{prefix}": ev.users for prefix, ev in test_evals.items()}
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r.test_per_user for r in runs if r.label == label]
        for metric in mine[0]:
            arrays[f"{label}|{metric}"] = np.mean([p[metric] for p in mine], axis=0)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _split_line(split: Split) -> str:
    s = split.summary()
    cold = f", {s['cold_items']:,} cold items" if s["cold_items"] else ""
    return f"split {s['name']}: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}{cold}"


def _opponent(config: Config, ranking: list[str]) -> tuple[str, str] | None:
    """Whom the best model is tested against: the strongest baseline by validation when some model is
    marked `baseline` and the best is not one, else the runner-up."""
    if len(ranking) < 2:
        return None
    baselines = [m.display_name for m in config.models if m.baseline]
    if baselines and ranking[0] not in baselines:
        return next(label for label in ranking if label in baselines), "strongest baseline"
    return ranking[1], "runner-up"


def _significance(
    runs: list[ModelRun], ranking: list[str], opponent: str | None, metric: str
) -> PairedTest | None:
    if opponent is None:
        return None

    def per_user(label: str) -> np.ndarray:
        return np.mean([r.test_per_user[metric] for r in runs if r.label == label], axis=0)

    best = ranking[0]
    return paired_test(metric, best, per_user(best), opponent, per_user(opponent))


def _summarise(
    config: Config,
    dataset: Dataset,
    split: Split,
    runs: list[ModelRun],
    tuned: dict[str, TuneResult],
    test_users: np.ndarray,
) -> dict[str, Any]:
    monitor = config.eval.monitor
    selection_metric = _selection_prefix(config) + monitor
    models: dict[str, Any] = {}
    for model_cfg in config.models:
        label = model_cfg.display_name
        mine = [r for r in runs if r.label == label]
        tuning = tuned.get(label)
        models[label] = {
            "model": model_cfg.name,
            "params": {**model_cfg.params, **(tuning.best_params if tuning else {})},
            "baseline": model_cfg.baseline,
            "tuning": tuning.to_dict() if tuning else None,
            "valid": mean_std([r.valid for r in mine]),
            "test": mean_std([r.test for r in mine]),
            "fit_seconds": mean_std([{"fit_seconds": r.fit_seconds} for r in mine])["fit_seconds"],
            "runs": [
                {
                    "seed": r.seed,
                    "valid": r.valid,
                    "test": r.test,
                    "fit_seconds": r.fit_seconds,
                    "epochs": len(r.history),
                    "history": r.history,
                }
                for r in mine
            ],
        }
    # Selection reads validation only; the test columns are reported, never used to choose.
    ranking = sorted(
        models,
        key=lambda m: models[m]["valid"].get(selection_metric, {}).get("mean", -np.inf),
        reverse=True,
    )
    opponent = _opponent(config, ranking)
    test = _significance(runs, ranking, opponent[0] if opponent else None, selection_metric)
    return {
        "name": config.name,
        "dataset": dataset.summary(),
        "split": split.summary(),
        "protocol": {
            "ranking": "full ranking over all items",
            "masked_at_validation": ["train"],
            "eval_protocol": config.eval.protocol,
            "masked_at_test": list(MASKED_AT_TEST[config.eval.protocol]),
            "users_evaluated_at_test": len(test_users),
            "ks": config.eval.ks,
            "monitor": monitor,
            "valid_on": config.eval.valid_on,
            "selection_metric": selection_metric,
            "selection": "best validation mean of the monitor metric",
            "seeds": config.seeds,
            "warm_cold": bool(len(split.cold_items)),
            "tuning": {
                "sampler": " and ".join(dict.fromkeys(t.sampler for t in tuned.values())),
                "trials_per_model": config.tune.trials,
                "seed": config.tune.seed,
                "timeout_s": config.tune.timeout_s,
                "trial_seed": config.seeds[0],
                "models": list(tuned),
            }
            if tuned
            else None,
            "compared_with": opponent[1] if opponent else None,
        },
        "models": models,
        "ranking_by_validation": ranking,
        "significance": test.to_dict() if test else None,
        "significance_sentence": test.sentence() if test else None,
    }


def _write_plots_and_curves(
    config: Config, runs: list[ModelRun], payload: dict[str, Any], run_dir: Path
) -> None:
    first_seed = {r.label: r.history for r in runs if r.seed == config.seeds[0]}
    if config.report.plots:
        curves = plot_training_curves(first_seed, config.eval.monitor, run_dir / "training_curves.png")
        shown = [
            f"{m}@{k}"
            for m in ("recall", "ndcg", "precision", "map", "hit", "mrr")
            for k in config.eval.ks[-1:]
        ]
        plot_metric_comparison(
            {label: m["test"] for label, m in payload["models"].items()},
            shown,
            run_dir / "metric_comparison.png",
        )
        payload["plots"] = [p.name for p in (curves, run_dir / "metric_comparison.png") if p is not None]
    if config.report.tensorboard:
        from crossrec.report.tensorboard import write_tensorboard

        write_tensorboard({f"{r.label}/seed{r.seed}": r.history for r in runs}, run_dir / "tensorboard")
