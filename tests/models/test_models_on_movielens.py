"""Every personalised model must clear the popularity floor on real ratings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.schema import Interactions, Split
from crossrec.data.splits import random_split
from crossrec.eval.ranking import evaluator_for
from crossrec.models import MostPop, build_model

RATINGS = Path("/work/shared/data/movielens-small/ml-latest-small/ratings.csv")
QUICK = {"embedding_dim": 32, "lr": 2e-2, "batch_size": 2048, "epochs": 12, "eval_every": 2, "patience": 2}


@pytest.fixture(scope="module")
def movielens_liked() -> Split:
    """Ratings of 4+ stars as positives, split 8:1:1 per user (seed 0)."""
    if not RATINGS.exists():
        pytest.skip(f"MovieLens ratings not found at {RATINGS}")
    df = pd.read_csv(RATINGS)
    df = df[df["rating"] >= 4]
    users, items = pd.factorize(df["userId"])[0], pd.factorize(df["movieId"])[0]
    inter = Interactions(users, items, np.ones(len(df)), int(users.max()) + 1, int(items.max()) + 1)
    return random_split(inter, seed=0)


@pytest.mark.parametrize(
    ("name", "params"),
    [("itemknn", {"k": 50}), ("bpr", QUICK), ("lightgcn", {**QUICK, "n_layers": 2})],
)
def test_beats_mostpop(name: str, params: dict[str, object], movielens_liked: Split) -> None:
    split = movielens_liked
    valid = evaluator_for(split.valid, split.train)
    test = evaluator_for(split.test, split.train, split.valid)
    floor = test(MostPop().fit(split.train))["recall@20"]
    model = build_model(name, **params).fit(split.train, valid=valid)
    assert test(model)["recall@20"] > 1.1 * floor
