"""Every user's recommendations as one file, for batch jobs (e-mails, a cache in front of the API, an
offline audit): the lists the API would give, from the same state and index."""

from __future__ import annotations

import csv
from pathlib import Path

from crossrec.io import atomic_path
from crossrec.serve.state import ServingState

COLUMNS = ("user_id", "rank", "item_id", "score")


def write_recommendations(state: ServingState, path: str | Path, k: int = 20) -> int:
    """Write `COLUMNS` rows, k per user (fewer when fewer items are eligible), best first; the file
    appears only once complete. Returns the number of rows."""
    rows = 0
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for users, ids, scores in state.recommend_all(k):
            for user, row_ids, row_scores in zip(users, ids, scores, strict=True):
                found = row_ids >= 0
                ranked = zip(row_ids[found], row_scores[found], strict=True)
                writer.writerows(
                    (state.user_ids[user], rank, state.item_ids[item], f"{score:.6g}")
                    for rank, (item, score) in enumerate(ranked, 1)
                )
                rows += int(found.sum())
    return rows
