from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossrec.data.loaders import load_dataset, load_table
from crossrec.errors import ConfigError, DataError

COLUMNS = {"user": "userId", "item": "movieId", "value": "rating", "timestamp": "timestamp"}


@pytest.fixture(scope="module")
def ratings(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "movielens-small" / "ml-latest-small" / "ratings.csv", nrows=2_000)


@pytest.fixture
def ratings_csv(tmp_path: Path, ratings: pd.DataFrame) -> Path:
    path = tmp_path / "ratings.csv"
    ratings.to_csv(path, index=False)
    return path


@pytest.fixture
def catalog(tmp_path: Path, ratings: pd.DataFrame, shared_data: Path) -> Path:
    """Movies rated in the slice plus 5 unrated ones, with posters (relative paths) where they exist."""
    ml = shared_data / "movielens-small" / "ml-latest-small"
    movies = pd.read_csv(ml / "movies.csv")
    unrated = movies[~movies["movieId"].isin(ratings["movieId"])].head(5)
    movies = pd.concat([unrated, movies[movies["movieId"].isin(ratings["movieId"])]])
    movies = movies.merge(pd.read_csv(ml / "links.csv"), on="movieId", how="left")
    (tmp_path / "posters").mkdir()
    posters = []
    for tmdb in movies["tmdbId"].head(20):
        source = shared_data / "movielens-small" / "posters" / f"{tmdb:.0f}.jpg"
        if source.is_file():
            shutil.copy(source, tmp_path / "posters" / source.name)
            posters.append(f"posters/{source.name}")
        else:
            posters.append("")
    movies["poster"] = posters + [""] * (len(movies) - len(posters))
    path = tmp_path / "movies.csv"
    movies.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_formats_agree(tmp_path: Path, ratings: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"ratings{suffix}"
    if suffix == ".parquet":
        ratings.to_parquet(path)
    elif suffix == ".jsonl":
        ratings.to_json(path, orient="records", lines=True)
    else:
        ratings.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    data = load_table(path, columns=COLUMNS)
    inter = data.interactions
    assert data.name == "ratings" and len(inter) == 2_000
    assert np.array_equal(data.user_ids[inter.user], ratings["userId"])
    assert np.array_equal(data.item_ids[inter.item], ratings["movieId"])
    assert data.item_ids.dtype == np.int64 and np.all(np.diff(data.item_ids) > 0)
    assert np.allclose(inter.value, ratings["rating"])
    assert np.array_equal(inter.timestamp, ratings["timestamp"])


def test_defaults_value_one_and_iso_dates(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,when\na,x,2018-09-26T10:00:00Z\nb,y,1537956000\n")
    data = load_table(path, columns={"timestamp": "when"})
    assert list(data.interactions.value) == [1.0, 1.0]
    assert list(data.interactions.timestamp) == [1_537_956_000, 1_537_956_000]
    assert list(data.user_ids) == ["a", "b"] and list(data.item_ids) == ["x", "y"]


def test_items_table_text_images_and_features(
    tmp_path: Path, ratings_csv: Path, catalog: Path, ratings: pd.DataFrame
) -> None:
    movies = pd.read_csv(catalog)
    np.save(tmp_path / "genre_feat.npy", movies["genres"].str.count(r"\|").to_numpy()[:, None] + 1.0)
    data = load_table(
        ratings_csv,
        columns=COLUMNS,
        items=catalog,
        item_columns={"id": "movieId", "title": "title", "genres": "genres", "image": "poster"},
        feature_files={"genre_count": tmp_path / "genre_feat.npy"},
    )
    assert np.array_equal(data.item_ids, movies["movieId"])  # the catalog's order, unrated movies included
    assert (data.interactions.item_counts() == 0).sum() == 5
    assert data.content.text["title"] == movies["title"].tolist()
    assert np.array_equal(data.item_ids[data.interactions.item], ratings["movieId"])
    images = data.content.image
    assert sum(p is not None for p in images) == (movies["poster"].notna()).sum() > 0
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in images if p is not None)
    assert data.content.features["genre_count"].shape == (len(movies), 1)


def test_base_dir_resolves_relative_paths(tmp_path: Path, ratings_csv: Path, catalog: Path) -> None:
    data = load_table(
        "ratings.csv", columns=COLUMNS, items="movies.csv", item_columns={"id": "movieId"}, base_dir=tmp_path
    )
    assert len(data.interactions) == 2_000 and data.content.text == {}


def test_bad_options_and_files(tmp_path: Path, ratings_csv: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown column key\(s\) rating; use user, item, value, timestamp"
    ):
        load_table(ratings_csv, columns={"rating": "rating"})
    with pytest.raises(DataError, match=r"nope\.csv.*interactions table.*does not exist"):
        load_table(tmp_path / "nope.csv")
    shutil.copy(ratings_csv, tmp_path / "ratings.xlsx")
    with pytest.raises(DataError, match=r"ratings\.xlsx.*cannot tell the table format.*\.csv, \.tsv"):
        load_table(tmp_path / "ratings.xlsx")


def test_missing_column_lists_the_columns_found(ratings_csv: Path) -> None:
    with pytest.raises(DataError) as err:
        load_table(ratings_csv, columns={"user": "user_id", "item": "movieId"})
    assert err.value.field == "user_id"
    assert "missing column 'user_id' (columns found: userId, movieId, rating, timestamp)" in str(err.value)


@pytest.mark.parametrize(("column", "value"), [("rating", "abc"), ("timestamp", "x"), ("userId", "")])
def test_unparsable_csv_cell(ratings_csv: Path, edit_cell, column: str, value: str) -> None:
    edit_cell(ratings_csv, 10, column, value)
    with pytest.raises(DataError) as err:
        load_table(ratings_csv, columns=COLUMNS)
    assert (err.value.file, err.value.row, err.value.field) == (str(ratings_csv), 10, column)
    assert (repr(value) if value else "empty") in str(err.value)


def test_jsonl_and_parquet_rows_count_records_from_one(tmp_path: Path, ratings: pd.DataFrame) -> None:
    bad = ratings.astype({"rating": object})
    bad.loc[6, "rating"] = "abc"  # the 7th record
    bad.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"r\.jsonl, row 7, field 'rating': 'abc' is not a number"):
        load_table(tmp_path / "r.jsonl", columns=COLUMNS)
    bad = ratings.astype({"timestamp": float})
    bad.loc[[6, 9], "timestamp"] = np.inf
    bad.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(
        DataError, match=r"r\.parquet, row 7, field 'timestamp': inf .*\(2 rows have this problem\)"
    ):
        load_table(tmp_path / "r.parquet", columns=COLUMNS)


def test_blank_lines_keep_row_numbers(ratings_csv: Path) -> None:
    lines = ratings_csv.read_text().splitlines()
    lines[3:3] = [""]  # a blank line 4
    lines[7] = lines[7].replace(lines[7].split(",")[2], "bad", 1)
    ratings_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 8, field 'rating': 'bad'"):
        load_table(ratings_csv, columns=COLUMNS)


def test_empty_and_malformed_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("user,item\n")
    with pytest.raises(DataError, match=r"empty\.csv.*no data rows"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "nothing.csv").write_text("")
    with pytest.raises(DataError, match=r"nothing\.csv.*no data rows"):
        load_table(tmp_path / "nothing.csv")
    (tmp_path / "ragged.csv").write_text("user,item\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"ragged\.csv: cannot read the interactions table as csv"):
        load_table(tmp_path / "ragged.csv")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read the interactions table as parquet"):
        load_table(tmp_path / "broken.parquet")


def test_unknown_and_duplicate_items(ratings_csv: Path, catalog: Path, edit_cell) -> None:
    edit_cell(ratings_csv, 5, "movieId", "424242")
    with pytest.raises(DataError, match=r"row 5, field 'movieId': item '424242' is not in the items table"):
        load_table(ratings_csv, columns=COLUMNS, items=catalog)
    movies = pd.read_csv(catalog)
    pd.concat([movies, movies.head(1)]).to_csv(catalog, index=False)
    with pytest.raises(
        DataError, match=rf"movies\.csv, row {len(movies) + 2}, field 'movieId'.*listed twice"
    ):
        load_table(ratings_csv, columns=COLUMNS, items=catalog)


def test_missing_image_file_and_bad_features(tmp_path: Path, ratings_csv: Path, catalog: Path) -> None:
    movies = pd.read_csv(catalog)
    first = int(movies["poster"].first_valid_index())
    (tmp_path / movies.loc[first, "poster"]).unlink()
    with pytest.raises(
        DataError, match=rf"movies\.csv, row {first + 2}, field 'poster': file .* does not exist"
    ):
        load_table(ratings_csv, columns=COLUMNS, items=catalog, item_columns={"image": "poster"})
    np.save(tmp_path / "f.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"f\.npy, field 'x'.*3 rows but the dataset has"):
        load_table(ratings_csv, columns=COLUMNS, feature_files={"x": tmp_path / "f.npy"})
    n_items = pd.read_csv(ratings_csv)["movieId"].nunique()
    features = np.zeros((n_items, 2))
    features[7, 1] = np.nan
    np.save(tmp_path / "f.npy", features)
    with pytest.raises(DataError, match=r"f\.npy, row 8, field 'x': 1 feature rows contain NaN"):
        load_table(ratings_csv, columns=COLUMNS, feature_files={"x": tmp_path / "f.npy"})


def test_npy_files_left_out_are_named(tmp_path: Path, ratings_csv: Path) -> None:
    n_items = pd.read_csv(ratings_csv)["movieId"].nunique()
    np.save(tmp_path / "all-MiniLM-L6-v2.npy", np.ones((n_items, 3), dtype=np.float32))
    with pytest.warns(UserWarning, match=r"not reading all-MiniLM-L6-v2\.npy .*feature_files: \{all-MiniLM"):
        assert load_table(ratings_csv, columns=COLUMNS).content.features == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_table(
            "ratings.csv", columns=COLUMNS, base_dir=tmp_path, feature_files={"text": "all-MiniLM-L6-v2.npy"}
        )
    assert data.content.features["text"].shape == (n_items, 3)


DAT_COLUMNS = {"user": "1", "item": "2", "value": "3", "timestamp": "4"}


@pytest.fixture
def movielens_1m_style(tmp_path: Path, ratings: pd.DataFrame, shared_data: Path) -> tuple[Path, Path]:
    """ratings.dat and movies.dat as MovieLens 1M ships them: `::`-separated, no header, latin-1 text."""
    ratings_dat = tmp_path / "ratings.dat"
    lines = ratings[["userId", "movieId", "rating", "timestamp"]].astype(str).agg("::".join, axis=1)
    ratings_dat.write_text("\n".join(lines) + "\n")
    movies = pd.read_csv(shared_data / "movielens-small" / "ml-latest-small" / "movies.csv")
    movies = movies[movies["movieId"].isin(ratings["movieId"]) | movies["title"].str.contains("é")]
    movies_dat = tmp_path / "movies.dat"
    movies_dat.write_bytes(("\n".join(movies.astype(str).agg("::".join, axis=1)) + "\n").encode("latin-1"))
    return ratings_dat, movies_dat


def test_movielens_1m_dat_files(movielens_1m_style: tuple[Path, Path], ratings: pd.DataFrame) -> None:
    ratings_dat, movies_dat = movielens_1m_style
    data = load_dataset("table", ratings_dat, columns=DAT_COLUMNS)  # .dat: "::", no header row
    inter = data.interactions
    assert len(inter) == 2_000 and np.array_equal(data.item_ids[inter.item], ratings["movieId"])
    assert np.allclose(inter.value, ratings["rating"]) and np.array_equal(
        inter.timestamp, ratings["timestamp"]
    )

    with_items = load_table(
        ratings_dat,
        columns=DAT_COLUMNS,
        items=movies_dat,
        item_columns={"id": "1", "title": "2", "genres": "3"},
        encoding="latin-1",
    )
    titles = with_items.content.text["title"]
    assert len(titles) == with_items.n_items > data.n_items  # the catalog adds unrated movies
    assert any("é" in t for t in titles) and titles[0] == "Toy Story (1995)"
    with pytest.raises(DataError, match=r"movies\.dat: cannot read the items table as dat.*utf-8"):
        load_table(ratings_dat, columns=DAT_COLUMNS, items=movies_dat, item_columns={"id": "1"})


def test_dat_rows_count_from_the_first_line(movielens_1m_style: tuple[Path, Path]) -> None:
    ratings_dat = movielens_1m_style[0]
    lines = ratings_dat.read_text().splitlines()
    cells = lines[6].split("::")
    lines[6] = "::".join([*cells[:2], "x", cells[3]])  # line 7's rating
    ratings_dat.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ratings\.dat, row 7, field '3': 'x' is not a number"):
        load_table(ratings_dat, columns=DAT_COLUMNS)
    with pytest.raises(DataError, match=r"missing column 'userId' \(columns found: 1, 2, 3, 4\)"):
        load_table(ratings_dat, columns=COLUMNS)


def test_format_and_sep_options(tmp_path: Path, ratings: pd.DataFrame) -> None:
    piped = tmp_path / "ratings.txt"
    ratings.to_csv(piped, sep="|", index=False)
    with pytest.raises(DataError, match=r"cannot tell the table format.*pass the format option"):
        load_table(piped, columns=COLUMNS)
    data = load_table(piped, columns=COLUMNS, format="csv", sep="|")
    assert np.array_equal(data.item_ids[data.interactions.item], ratings["movieId"])
    double = tmp_path / "ratings.log"
    double.write_text(ratings.astype(str).agg("||".join, axis=1).str.cat(sep="\n"))  # taken literally
    data = load_table(double, columns=DAT_COLUMNS, format="dat", sep="||")
    assert np.allclose(data.interactions.value, ratings["rating"])
    with pytest.raises(
        ConfigError, match="unknown table format 'xlsx'; choose one of csv, tsv, dat, parquet"
    ):
        load_table(piped, format="xlsx")
    with pytest.raises(ConfigError, match="the sep option applies to csv, tsv, dat, not parquet"):
        load_table(piped, format="parquet", sep=";")
