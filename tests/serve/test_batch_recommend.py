"""Top-k for every user in one pass (`ServingState.recommend_all`, `crossrec recommend`): the lists the
API gives, seen items excluded, through the same index."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from crossrec.cli import app as cli
from crossrec.serve.events import FeedbackEvent
from crossrec.serve.state import ServingState
from crossrec.serve.store import EventStore

pytestmark = pytest.mark.slow


def test_every_users_list_is_the_one_recommend_gives(bundle):
    state = ServingState(bundle)
    assert state.index.kind == "exact"  # movielens-small: 9.7k items, below the HNSW threshold
    parts = list(state.recommend_all(10, batch=128))
    users = np.concatenate([p[0] for p in parts])
    ids = np.concatenate([p[1] for p in parts])
    assert np.array_equal(users, np.arange(len(state.user_ids))) and len(parts) == -(-len(users) // 128)
    for user in np.random.default_rng(0).choice(len(users), 40, replace=False):
        expected = [item for item, _ in state.recommend(state.user_ids[user], 10)]
        assert ids[user].tolist() == expected
        assert not set(expected) & set(state.seen(int(user)))
    with pytest.raises(ValueError, match="batch must be >= 1"):
        next(state.recommend_all(10, batch=0))


def test_through_an_hnsw_index_the_lists_match_exact_scoring(bundle):
    exact = ServingState(bundle)
    graph = ServingState(bundle, exact_below=1000)
    assert graph.index.kind == "hnsw"
    found = np.concatenate([p[1] for p in graph.recommend_all(20)])
    truth = np.concatenate([p[1] for p in exact.recommend_all(20)])
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(found, truth, strict=True)])
    assert recall > 0.95
    assert all(not set(row) & set(graph.seen(u)) for u, row in enumerate(found))


def test_the_cli_writes_every_users_list_after_the_log(bundle, bundle_dir, tmp_path):
    store_path = tmp_path / "serve.sqlite"
    liked = [str(i) for i in bundle.item_ids[:5]]
    with EventStore(store_path) as store:
        store.append_feedback([FeedbackEvent("late-user", item, "click") for item in liked])
    out = tmp_path / "recs.csv"
    result = CliRunner().invoke(
        cli, ["recommend", str(bundle_dir), "--out", str(out), "--k", "7", "--store", str(store_path)]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_user: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    assert len(by_user) == len(bundle.user_ids) + 1 and all(len(r) == 7 for r in by_user.values())
    late = by_user["late-user"]
    assert [r["rank"] for r in late] == [str(i) for i in range(1, 8)] and not {
        r["item_id"] for r in late
    } & set(liked)
    scores = [float(r["score"]) for r in late]
    assert scores == sorted(scores, reverse=True)
    state = ServingState(bundle)
    state.catch_up(EventStore(store_path))
    user = str(bundle.user_ids[3])
    assert [r["item_id"] for r in by_user[user]] == [state.item_ids[i] for i, _ in state.recommend(user, 7)]
    exact = CliRunner().invoke(
        cli,
        [
            "recommend",
            str(bundle_dir),
            "--out",
            str(tmp_path / "e.csv"),
            "--exact",
            "--store",
            str(store_path),
        ],
    )
    assert exact.exit_code == 0 and "exact scoring" in exact.output
    missing = CliRunner().invoke(
        cli, ["recommend", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.csv")]
    )
    assert missing.exit_code != 0 and not (tmp_path / "x.csv").exists()
