"""`crossrec retrain`: the server's logged feedback joins the next training run."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.data.schema import Split
from crossrec.experiment import load_bundle, resume_experiment
from crossrec.serve.events import FeedbackEvent, ItemRecord
from crossrec.serve.retrain import retrain
from crossrec.serve.store import EventStore

pytestmark = pytest.mark.slow


def test_logged_feedback_is_folded_into_the_next_run(bundle, bundle_dir, tmp_path):
    run_dir = bundle_dir.parent
    items = [str(i) for i in bundle.item_ids[:15]]
    store_path = tmp_path / "serve.sqlite"
    with EventStore(store_path) as store:
        store.append_feedback([FeedbackEvent("fresh-user", i, "click") for i in items])
        store.append_feedback([FeedbackEvent(str(bundle.user_ids[0]), items[0], "rating", 4.5)])
        store.upsert_item(ItemRecord("added-live", {"title": "New"}))
        store.append_feedback([FeedbackEvent("fresh-user", "added-live", "click")])
    overrides = ["models.0.params.epochs=1", "align=null", "models.0.params.modalities=[text]"]
    result, folded = retrain(run_dir, store_path, name="retrained", overrides=overrides, quiet=True)
    assert folded == {"events": 16, "new_users": 1, "skipped_events_on_new_items": 1, "through_seq": 18}
    new = load_bundle(result.bundle_dir)
    assert "fresh-user" in set(new.user_ids) and len(new.user_ids) == len(bundle.user_ids) + 1
    split = Split.load(result.run_dir / "split.npz")
    fresh = int(np.flatnonzero(new.user_ids == "fresh-user")[0])
    seen = sum(int((part.user == fresh).sum()) for part in (split.train, split.valid, split.test))
    assert seen == 15
    again = resume_experiment(result.run_dir, quiet=True)  # the logged events come back on resume
    assert again.summary.split == result.summary.split
