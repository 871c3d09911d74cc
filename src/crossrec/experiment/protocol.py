"""The evaluation protocol of a run: which evaluators read which split, what selects epochs,
parameters and models (validation only), and whom the best model is tested against.

Test metrics are computed once per (model, seed) and never feed a choice: selection reads the
validation evaluator named by `eval.valid_on`, and the significance test compares per-user test
values only after the ranking by validation is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crossrec.config import Config
from crossrec.data.features import ItemFeatures
from crossrec.data.schema import Interactions, Split
from crossrec.errors import ConfigError
from crossrec.eval.ranking import RankingEvaluator, evaluator_for
from crossrec.eval.rating import RatingValidator, rating_errors
from crossrec.eval.stats import PairedTest, paired_test
from crossrec.models.base import Recommender, Validator


@dataclass
class Protocol:
    """Validation and test evaluators keyed by metric prefix, and the one that selects."""

    valid: dict[str, RankingEvaluator]
    test: dict[str, RankingEvaluator]
    selector: RankingEvaluator
    selection_prefix: str


def selection_prefix(config: Config) -> str:
    return "" if config.eval.valid_on == "all" else f"{config.eval.valid_on}_"


def build_protocol(config: Config, split: Split, features: dict[str, ItemFeatures]) -> Protocol:
    """'' ranks among all items; when the split holds cold items, 'warm_' ranks warm targets among
    warm items and 'cold_' ranks cold targets among the cold items of that split, so a cold-start
    model is judged on what it was built for."""
    common: dict[str, Any] = {
        "ks": config.eval.ks,
        "monitor": config.eval.monitor,
        "batch_size": config.eval.batch_size,
        "protocol": config.eval.protocol,
        "max_users": config.eval.max_users,
    }
    vectors = _diversity_vectors(features, config.eval.diversity_features)
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
    prefix = selection_prefix(config)
    if prefix not in valid:
        raise ConfigError(
            f"eval.valid_on={config.eval.valid_on} needs a split with cold items (split.method: cold_item)"
        )
    if not len(valid[prefix].users):
        raise ConfigError(f"eval.valid_on={config.eval.valid_on}: no validation user has such an item")
    return Protocol(valid, test, valid[prefix], prefix)


def _diversity_vectors(features: dict[str, ItemFeatures], name: str | None) -> np.ndarray | None:
    if name is None:
        return None
    if name not in features:
        known = ", ".join(sorted(features)) or "none"
        raise ConfigError(
            f"eval.diversity_features '{name}' is not an item feature of the run (has: {known})"
        )
    return features[name].matrix


def validator_for(model: Recommender, protocol: Protocol, split: Split, batch_size: int) -> Validator:
    """What early stopping and tuning maximise: the ranking monitor, or validation RMSE for a model
    that predicts ratings."""
    if model.predicts_ratings:
        return RatingValidator(protocol.selector, split.valid, batch_size)
    return protocol.selector


def read_metrics(
    evaluators: dict[str, RankingEvaluator], model: Recommender, target: Interactions, batch_size: int
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


def opponent(config: Config, ranking: list[str]) -> tuple[str, str] | None:
    """Whom the best model is tested against: the strongest baseline by validation when some model is
    marked `baseline` and the best is not one, else the runner-up."""
    if len(ranking) < 2:
        return None
    baselines = [m.display_name for m in config.models if m.baseline]
    if baselines and ranking[0] not in baselines:
        return next(label for label in ranking if label in baselines), "strongest baseline"
    return ranking[1], "runner-up"


def significance(
    per_user: dict[str, np.ndarray], best: str, other: str | None, metric: str
) -> PairedTest | None:
    """Paired test of `best` against `other` on the per-user test values (mean over seeds)."""
    if other is None:
        return None
    return paired_test(metric, best, per_user[best], other, per_user[other])
