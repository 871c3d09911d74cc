from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.loaders import load_movielens
from crossrec.data.schema import Dataset
from crossrec.errors import DataError


def test_counts_match_the_published_numbers(movielens: Dataset) -> None:
    assert movielens.n_users == 610
    assert len(movielens.interactions) == 100_836
    assert (movielens.interactions.item_counts() > 0).sum() == 9_724
    assert movielens.n_items == 9_742  # the whole catalog: unrated movies stay as cold items
    assert movielens.interactions.timestamp is not None
    assert set(np.unique(movielens.interactions.value)) <= set(np.arange(0.5, 5.01, 0.5))


def test_ids_are_raw_and_indices_are_positions(movielens: Dataset, shared_data: Path) -> None:
    assert np.all(np.diff(movielens.item_ids) > 0) and np.all(np.diff(movielens.user_ids) > 0)
    ratings = pd.read_csv(shared_data / "movielens-small" / "ml-latest-small" / "ratings.csv")
    inter = movielens.interactions
    assert np.array_equal(movielens.user_ids[inter.user], ratings["userId"])
    assert np.array_equal(movielens.item_ids[inter.item], ratings["movieId"])
    assert np.allclose(inter.value, ratings["rating"])


def test_posters_cover_about_92_percent_of_ratings(movielens: Dataset) -> None:
    has_poster = np.array([p is not None for p in movielens.content.image])
    counts = movielens.interactions.item_counts()
    assert counts[has_poster].sum() / counts.sum() == pytest.approx(0.923, abs=0.002)
    first = next(p for p in movielens.content.image if p is not None)
    assert Path(first).is_absolute() and Path(first).is_file()


def test_text_fields(movielens: Dataset) -> None:
    text = movielens.content.text
    toy_story = int(np.flatnonzero(movielens.item_ids == 1)[0])
    assert text["title"][toy_story] == "Toy Story (1995)"
    assert text["genres"][toy_story] == "Adventure, Animation, Children, Comedy, Fantasy"
    assert "pixar" in text["tags"][toy_story].split(", ")
    assert "Woody" in text["overview"][toy_story]
    assert "toy" in text["keywords"][toy_story].split(", ")
    assert sum(g is None for g in text["genres"]) == 34  # "(no genres listed)"
    assert sum(o is not None for o in text["overview"]) == 2_577
    assert sum(t is not None for t in text["tags"]) == 1_572
    schindler = int(np.flatnonzero(movielens.item_ids == 527)[0])  # tagged "Holocaust" and "holocaust"
    assert text["tags"][schindler].split(", ") == [
        "moving",
        "thought-provoking",
        "Holocaust",
        "based on a true story",
        "biography",
        "disturbing",
    ]


def test_min_rating_and_switches(mini_movielens: Path) -> None:
    full = load_movielens(mini_movielens)
    liked = load_movielens(mini_movielens, min_rating=4.0, posters=False, overviews=False)
    assert liked.interactions.value.min() >= 4.0
    assert len(liked.interactions) == int((full.interactions.value >= 4.0).sum())
    assert liked.n_items == full.n_items
    assert liked.content.image is None and "overview" not in liked.content.text


def test_bare_ml_folder_loads_without_extras(mini_movielens: Path) -> None:
    data = load_movielens(mini_movielens / "ml-latest-small", posters=False, overviews=False)
    assert len(data.interactions) == len(pd.read_csv(mini_movielens / "ml-latest-small" / "ratings.csv"))


def test_missing_folder_and_files(tmp_path: Path, mini_movielens: Path) -> None:
    with pytest.raises(DataError, match="MovieLens folder") as err:
        load_movielens(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    (mini_movielens / "ml-latest-small" / "ratings.csv").unlink()
    with pytest.raises(DataError, match=r"ratings\.csv.*does not exist"):
        load_movielens(mini_movielens)


def test_missing_extras_say_how_to_skip_them(mini_movielens: Path) -> None:
    (mini_movielens / "posters").unlink()
    with pytest.raises(DataError, match=r"posters.*posters=False"):
        load_movielens(mini_movielens)
    (mini_movielens / "text_extra" / "tmdb_3000_movies.csv").unlink()
    with pytest.raises(DataError, match=r"tmdb_3000_movies\.csv.*overviews=False"):
        load_movielens(mini_movielens, posters=False)
    assert load_movielens(mini_movielens, posters=False, overviews=False).content.image is None


def test_missing_column_lists_the_columns_found(mini_movielens: Path) -> None:
    path = mini_movielens / "ml-latest-small" / "ratings.csv"
    pd.read_csv(path).drop(columns="rating").to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_movielens(mini_movielens)
    message = str(err.value)
    assert "ratings.csv" in message and "missing column 'rating'" in message
    assert "columns found: userId, movieId, timestamp" in message


@pytest.mark.parametrize(("column", "value"), [("rating", "abc"), ("timestamp", "x"), ("userId", "7.5")])
def test_unparsable_cell_names_row_and_field(
    mini_movielens: Path, edit_cell, column: str, value: str
) -> None:
    path = mini_movielens / "ml-latest-small" / "ratings.csv"
    edit_cell(path, 6, column, value)
    with pytest.raises(DataError) as err:
        load_movielens(mini_movielens)
    assert err.value.file == str(path) and err.value.row == 6 and err.value.field == column
    assert f"row 6, field '{column}'" in str(err.value) and repr(value) in str(err.value)


def test_unknown_movie_in_ratings(mini_movielens: Path, edit_cell) -> None:
    path = mini_movielens / "ml-latest-small" / "ratings.csv"
    edit_cell(path, 3, "movieId", "999999")
    with pytest.raises(
        DataError, match=r"ratings\.csv, row 3, field 'movieId': movie '999999' is not in movies"
    ):
        load_movielens(mini_movielens)


def test_empty_ratings_file(mini_movielens: Path) -> None:
    (mini_movielens / "ml-latest-small" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match=r"ratings\.csv.*no data rows"):
        load_movielens(mini_movielens)


def test_min_rating_that_keeps_nothing(mini_movielens: Path) -> None:
    with pytest.raises(DataError, match="min_rating=6"):
        load_movielens(mini_movielens, min_rating=6)


def test_duplicate_movie_and_bad_keywords(mini_movielens: Path) -> None:
    tmdb_path = mini_movielens / "text_extra" / "tmdb_3000_movies.csv"
    tmdb = pd.read_csv(tmdb_path)
    tmdb.loc[2, "keywords"] = "not json"
    tmdb.to_csv(tmdb_path, index=False)
    with pytest.raises(DataError) as err:
        load_movielens(mini_movielens)
    assert (err.value.row, err.value.field) == (4, "keywords") and "'not json'" in str(err.value)

    movies_path = mini_movielens / "ml-latest-small" / "movies.csv"
    movies = pd.read_csv(movies_path)
    pd.concat([movies, movies.tail(1)]).to_csv(movies_path, index=False)
    with pytest.raises(DataError, match=rf"row {len(movies) + 2}, field 'movieId'.*listed twice"):
        load_movielens(mini_movielens, overviews=False)
