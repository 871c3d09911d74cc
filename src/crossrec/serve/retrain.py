"""Retrain: a run repeated with the events its server logged folded into the training data.

Feedback from the durable log joins the source dataset before the split (new user ids become new
users; the split then holds out their latest events like anyone else's). Feedback on items that are
not in the source data (items added while serving) is left out and counted: their content lives in
the log, not in the dataset, so the next run could not encode them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossrec.config import load_config
from crossrec.data.loaders import load_dataset
from crossrec.experiment import ExperimentResult, run_experiment
from crossrec.serve.store import EventStore, export_interactions


def retrain(
    run_dir: str | Path,
    store_path: str | Path,
    *,
    name: str | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
) -> tuple[ExperimentResult, dict[str, int]]:
    """Run `run_dir`'s config again (as `name`, default `<run>-retrained`) on its dataset plus the
    logged feedback; returns the result and what was folded in."""
    run_dir = Path(run_dir)
    config = load_config(
        run_dir / "config.yaml",
        [f"name={name or run_dir.name + '-retrained'}", f"output_dir={run_dir.parent}", *(overrides or [])],
    )
    dataset = load_dataset(config.dataset.format, config.dataset.path, **config.dataset.options)
    with EventStore(store_path) as store:
        logged = export_interactions(store, dataset.user_ids, dataset.item_ids)
    inter = logged.interactions
    known = inter.item < dataset.n_items
    kept = inter.select(known)
    extra = type(inter)(kept.user, kept.item, kept.value, inter.n_users, dataset.n_items, kept.timestamp)
    result = run_experiment(config, quiet=quiet, extra=(np.asarray(logged.new_user_ids), extra))
    folded = {
        "events": int(known.sum()),
        "new_users": len(logged.new_user_ids),
        "skipped_events_on_new_items": int((~known).sum()),
        "through_seq": logged.through_seq,
    }
    return result, folded
