from __future__ import annotations

import numpy as np
import pytest

from crossrec.data.schema import Interactions, Split
from crossrec.models.sampling import NegativeSampler


def test_never_returns_a_positive(tiktok_slice: Split) -> None:
    train = tiktok_slice.train
    sampler = NegativeSampler(train)
    users = np.repeat(train.user, 20)
    negatives = sampler.sample(users, np.random.default_rng(0))
    assert not sampler.is_positive(users, negatives).any()
    assert negatives.min() >= 0 and negatives.max() < train.n_items
    positive = set(zip(train.user.tolist(), train.item.tolist(), strict=True))
    assert not positive & set(zip(users.tolist(), negatives.tolist(), strict=True))


def test_reaches_the_only_negative_and_is_uniform() -> None:
    # User 0 met every item but 3; user 1 met nothing, so its draws spread over all 5 items.
    train = Interactions([0, 0, 0, 0], [0, 1, 2, 4], [1, 1, 1, 1], n_users=2, n_items=5)
    sampler = NegativeSampler(train)
    rng = np.random.default_rng(1)
    assert (sampler.sample(np.zeros(500, dtype=np.int64), rng) == 3).all()
    counts = np.bincount(sampler.sample(np.ones(5000, dtype=np.int64), rng), minlength=5)
    assert counts.min() > 850 and counts.max() < 1150


def test_same_generator_seed_same_draws(tiktok_slice: Split) -> None:
    sampler = NegativeSampler(tiktok_slice.train)
    users = tiktok_slice.train.user
    a = sampler.sample(users, np.random.default_rng(7))
    b = sampler.sample(users, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_user_with_every_item_is_refused() -> None:
    train = Interactions([0, 0], [0, 1], [1, 1], n_users=2, n_items=2)
    sampler = NegativeSampler(train)
    with pytest.raises(ValueError, match="every item"):
        sampler.sample(np.array([1, 0]), np.random.default_rng(0))
