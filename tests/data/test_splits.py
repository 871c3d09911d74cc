from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrec.data.schema import Dataset, Interactions, Split
from crossrec.data.splits import cold_item_split, make_split, random_split, temporal_split
from crossrec.errors import ConfigError


def _per_user(inter: Interactions, reduce: np.ufunc, fill: float) -> np.ndarray:
    out = np.full(inter.n_users, fill)
    reduce.at(out, inter.user, inter.timestamp.astype(np.float64))
    return out


def _user_counts(inter: Interactions) -> np.ndarray:
    return np.bincount(inter.user, minlength=inter.n_users)


def _assert_time_ordered(split: Split) -> None:
    """Per user: every train time <= every valid time <= every test time (users missing a part pass)."""
    for earlier, later in ((split.train, split.valid), (split.valid, split.test), (split.train, split.test)):
        assert np.all(_per_user(earlier, np.maximum, -np.inf) <= _per_user(later, np.minimum, np.inf))


def test_random_split_is_8_1_1_and_deterministic(movielens: Dataset) -> None:
    inter = movielens.interactions
    split = random_split(inter, seed=3)
    sizes = np.array([len(split.train), len(split.valid), len(split.test)]) / len(inter)
    assert sizes == pytest.approx([0.8, 0.1, 0.1], abs=0.01)
    again = random_split(inter, seed=3)
    assert np.array_equal(split.test.user, again.test.user) and np.array_equal(
        split.test.item, again.test.item
    )
    assert not np.array_equal(split.test.item, random_split(inter, seed=4).test.item)
    assert np.all(_user_counts(split.train)[_user_counts(inter) > 0] >= 1)


def test_temporal_split_puts_the_latest_in_test(movielens: Dataset) -> None:
    split = temporal_split(movielens.interactions, holdout=0.2)
    _assert_time_ordered(split)
    assert len(split.test) + len(split.valid) == pytest.approx(0.2 * len(movielens.interactions), rel=0.02)


def test_leave_last_one_out(movielens: Dataset) -> None:
    inter = movielens.interactions
    split = temporal_split(inter, holdout=1)
    _assert_time_ordered(split)
    enough = _user_counts(inter) >= 3
    assert np.all(_user_counts(split.valid)[enough] == 1) and np.all(_user_counts(split.test)[enough] == 1)
    assert len(split.train) == len(inter) - 2 * enough.sum()


def test_temporal_split_keeps_millisecond_order() -> None:
    """Row 0 is user 0's latest (t + 1 ms) and row n-1 the one before it: the order must survive."""
    n, t = 20_000, 1_700_000_000_000
    user = np.ones(n, dtype=np.int64)
    user[[0, 1, n - 1]] = 0
    timestamp = np.full(n, t - 5_000)
    timestamp[[0, 1, n - 1]] = [t + 1, t - 100, t]
    split = temporal_split(Interactions(user, np.arange(n) % 7, np.ones(n), 2, 7, timestamp))
    assert split.test.timestamp[split.test.user == 0].tolist() == [t + 1]
    assert split.valid.timestamp[split.valid.user == 0].tolist() == [t]


def test_cold_item_split(movielens: Dataset) -> None:
    inter = movielens.interactions
    split = cold_item_split(inter, cold_fraction=0.1, seed=1)
    cold = split.cold_items
    assert len(cold) == round(0.1 * (inter.item_counts() > 0).sum())
    assert not np.isin(split.train.item, cold).any()
    cold_valid = np.intersect1d(split.valid.item, cold)
    cold_test = np.intersect1d(split.test.item, cold)
    assert len(cold_valid) and len(cold_test) and not len(np.intersect1d(cold_valid, cold_test))
    held_out = np.isin(split.valid.item, cold).sum() + np.isin(split.test.item, cold).sum()
    assert held_out == np.isin(inter.item, cold).sum()  # every row of a cold item went to valid or test
    assert np.array_equal(np.union1d(cold_valid, cold_test), cold)


def test_save_load_round_trip(movielens: Dataset, tmp_path: Path) -> None:
    split = cold_item_split(movielens.interactions, seed=2)
    loaded = Split.load(split.save(tmp_path / "split.npz"))
    assert loaded.summary() == split.summary()
    assert np.array_equal(loaded.cold_items, split.cold_items)
    for part in ("train", "valid", "test"):
        a, b = getattr(split, part), getattr(loaded, part)
        for field in ("user", "item", "value", "timestamp"):
            assert np.array_equal(getattr(a, field), getattr(b, field))


def test_one_default_split_shipped_when_the_data_has_one_else_temporal(
    movielens: Dataset, mini_diffmm: Path
) -> None:
    from crossrec.config import SplitConfig
    from crossrec.data.loaders import load_diffmm

    assert SplitConfig().method == "auto"  # the CLI (config) default and the Python default agree
    shipped = load_diffmm(mini_diffmm)
    assert make_split(shipped) is shipped.split and make_split(shipped, SplitConfig().method) is shipped.split
    default = make_split(movielens, holdout=2)
    assert default.name == "temporal-2"
    assert len(default.test) == len(temporal_split(movielens.interactions, holdout=2).test)
    inter = movielens.interactions
    no_time = Interactions(inter.user, inter.item, inter.value, inter.n_users, inter.n_items)
    untimed = Dataset("untimed", movielens.user_ids, movielens.item_ids, no_time)
    with pytest.raises(ConfigError, match=r"ships no split and has no timestamps.*random or cold_item"):
        make_split(untimed)


def test_split_config_errors(movielens: Dataset) -> None:
    with pytest.raises(ConfigError, match="ships no split"):
        make_split(movielens, "shipped")
    with pytest.raises(ConfigError, match="unknown split method 'by_genre'"):
        make_split(movielens, "by_genre")
    no_time = Interactions(np.zeros(2), np.arange(2), np.ones(2), 1, 2)
    with pytest.raises(ConfigError, match="needs timestamps"):
        temporal_split(no_time)


@st.composite
def interactions(draw: st.DrawFn) -> Interactions:
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 8))
    n = draw(st.integers(0, 60))
    user = draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n))
    item = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    timestamp = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))  # many ties
    # value = row number, so a lost or duplicated row shows in the union of the parts
    return Interactions(np.array(user, dtype=np.int64), item, np.arange(n), n_users, n_items, timestamp)


SPLITTERS = {
    "random": lambda inter, seed: random_split(inter, seed=seed),
    "temporal": lambda inter, seed: temporal_split(inter, holdout=1 + seed % 2),
    "temporal_fraction": lambda inter, seed: temporal_split(inter, holdout=0.3),
    "cold_item": lambda inter, seed: cold_item_split(inter, cold_fraction=0.3, seed=seed),
}


@settings(max_examples=60, deadline=None)
@given(inter=interactions(), method=st.sampled_from(sorted(SPLITTERS)), seed=st.integers(0, 3))
def test_splits_partition_the_rows(inter: Interactions, method: str, seed: int) -> None:
    split = SPLITTERS[method](inter, seed)
    union = split.train.concat(split.valid).concat(split.test)
    rows = union.value.astype(np.int64)
    assert np.array_equal(np.sort(rows), np.arange(len(inter)))
    assert np.array_equal(union.user, inter.user[rows]) and np.array_equal(union.item, inter.item[rows])
    assert np.array_equal(union.timestamp, inter.timestamp[rows])
    if method.startswith("temporal"):
        _assert_time_ordered(split)
    if method != "cold_item":
        assert np.all(_user_counts(split.train)[_user_counts(inter) > 0] >= 1)
