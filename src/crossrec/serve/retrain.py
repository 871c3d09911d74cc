"""Retrain: a run repeated with the events its server logged folded into the training data, and the
export of the log's feedback onto a dataset's id space that it rests on.

Feedback from the durable log joins the source dataset before the split (new user ids become new
users; the split then holds out their latest events like anyone else's). Feedback on items that are
not in the source data (items added while serving) is left out and counted: their content lives in
the log, not in the dataset, so the next run could not encode them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossrec.config import load_config
from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.experiment import ExperimentResult, run_experiment
from crossrec.serve.events import FEEDBACK_KINDS, FeedbackEvent, ItemDeleted
from crossrec.serve.store import EventStore


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


@dataclass(frozen=True)
class LoggedInteractions:
    """The log's feedback on a bundle's id space extended by the ids the bundle never saw: user index
    i < len(bundle users) is bundle user i, the next ones are `new_user_ids` in order of first appearance
    in the log (items alike). What a retrain folds into the next training run."""

    new_user_ids: np.ndarray
    new_item_ids: np.ndarray  # upserted or given feedback, and not deleted since
    deleted_item_ids: np.ndarray  # bundle items whose last logged event deletes them: retrain drops them
    interactions: Interactions  # timestamps floored to whole seconds, as the loaders read them
    through_seq: int  # the last seq read: the next export starts after it


def export_interactions(
    store: EventStore,
    user_ids: Iterable[str],
    item_ids: Iterable[str],
    *,
    kinds: Collection[str] = FEEDBACK_KINDS,
    after_seq: int = 0,
) -> LoggedInteractions:
    """Feedback of the given `kinds` logged after `after_seq`, indexed against the bundle's `user_ids` /
    `item_ids`. Feedback on an item deleted by the end of the log is left out, as the item is."""
    unknown = sorted(set(kinds) - set(FEEDBACK_KINDS))
    if unknown:
        raise ConfigError(f"unknown feedback kinds {unknown}; the log holds {', '.join(FEEDBACK_KINDS)}")
    bundle_items = [str(i) for i in item_ids]
    users = {str(u): i for i, u in enumerate(user_ids)}
    items = {item: i for i, item in enumerate(bundle_items)}
    feedback: list[FeedbackEvent] = []
    seen: dict[str, None] = {}  # items the bundle lacks, in order of first appearance
    deleted: dict[str, bool] = {}  # item -> whether its last item event deletes it
    through_seq = after_seq
    for seq, event in store.replay(after_seq):
        through_seq = seq
        if isinstance(event, FeedbackEvent):
            if event.kind in kinds:
                feedback.append(event)
        else:
            deleted[event.item_id] = isinstance(event, ItemDeleted)
        if event.item_id not in items:
            seen.setdefault(event.item_id)
    gone = {item for item, is_deleted in deleted.items() if is_deleted}
    new_items = [item for item in seen if item not in gone]
    items.update((item, k) for k, item in enumerate(new_items, start=len(items)))
    feedback = [e for e in feedback if e.item_id not in gone]
    new_users = list(dict.fromkeys(e.user_id for e in feedback if e.user_id not in users))
    users.update((user, k) for k, user in enumerate(new_users, start=len(users)))
    interactions = Interactions(
        np.array([users[e.user_id] for e in feedback], dtype=np.int64),
        np.array([items[e.item_id] for e in feedback], dtype=np.int64),
        np.array([e.value for e in feedback], dtype=np.float32),
        n_users=len(users),
        n_items=len(items),
        timestamp=np.floor(np.array([e.ts for e in feedback], dtype=np.float64)).astype(np.int64),
    )
    return LoggedInteractions(
        np.array(new_users, dtype=str),
        np.array(new_items, dtype=str),
        np.array([item for item in bundle_items if item in gone], dtype=str),
        interactions,
        through_seq,
    )
