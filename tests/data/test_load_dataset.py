from __future__ import annotations

from pathlib import Path

import pytest

from crossrec.data.loaders import LOADERS, load_dataset, load_diffmm
from crossrec.errors import ConfigError


def test_registry_names() -> None:
    assert set(LOADERS) == {"movielens", "diffmm", "mmrec", "table"}


def test_dispatches_with_options(mini_movielens: Path, mini_diffmm: Path) -> None:
    data = load_dataset("movielens", mini_movielens, min_rating=4.0, posters=False, overviews=False)
    assert data.interactions.value.min() >= 4.0
    assert load_dataset("diffmm", mini_diffmm).summary() == load_diffmm(mini_diffmm).summary()


def test_unknown_format_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="unknown dataset format 'csv'; choose one of movielens, diffmm, mmrec, table"
    ):
        load_dataset("csv", tmp_path)


def test_unknown_option_lists_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'colums'.*accepts: columns, items, item_columns"):
        load_dataset("table", tmp_path / "r.csv", colums={"user": "u"})
    with pytest.raises(ConfigError, match=r"format 'diffmm'.*min_rating"):
        load_dataset("diffmm", tmp_path, min_rating=3)
