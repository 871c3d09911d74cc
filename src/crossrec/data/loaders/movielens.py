"""MovieLens (ml-latest-small layout) with TMDB posters and overviews: the raw multimodal demo catalog."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.loaders._common import Table, read_table, require_dir, require_file, text_list
from crossrec.data.schema import Dataset, Interactions, ItemContent
from crossrec.errors import DataError

_TMDB_FILE = Path("text_extra") / "tmdb_3000_movies.csv"
_BAD = "\0bad"  # marks a keywords cell that is not the JSON TMDB writes


def load_movielens(
    path: str | Path,
    *,
    min_rating: float | None = None,
    posters: bool = True,
    overviews: bool = True,
) -> Dataset:
    """Load `path` = a folder holding ml-latest-small/{ratings,movies,tags}.csv (plus links.csv,
    posters/<tmdbId>.jpg and text_extra/tmdb_3000_movies.csv when `posters` / `overviews` ask for them).

    Items are every movie in movies.csv, sorted by movieId, rated or not: unrated movies are the cold
    items a content model must still rank. Users are those with a kept rating, sorted by userId.
    `min_rating` keeps ratings >= it (the usual implicit-feedback cut); values stay the star ratings.
    Text fields: title, genres, tags (users' tags, de-duplicated ignoring case) and, with `overviews`,
    overview, tagline and keywords from TMDB (None for the movies it lacks). Image: the poster's
    absolute path, None when there is no poster. Feature "genres": a multi-hot genre matrix.
    Errors cite CSV rows with the header as row 1.
    """
    root = require_dir(path, "the MovieLens folder (holding ml-latest-small/)")
    ml = root / "ml-latest-small" if (root / "ml-latest-small").is_dir() else root
    movies = _movies(read_table(ml / "movies.csv", "the MovieLens movie list (movies.csv)"))
    item_ids = movies["movieId"].to_numpy()
    inter, user_ids = _ratings(ml / "ratings.csv", item_ids, min_rating)

    no_genres = movies["genres"] == "(no genres listed)"
    text = {
        "title": text_list(movies["title"]),
        "genres": text_list(movies["genres"].str.replace("|", ", ", regex=False).mask(no_genres)),
        "tags": text_list(movies["movieId"].map(_tags(ml / "tags.csv", item_ids))),
    }
    image = None
    if posters or overviews:
        tmdb_ids = movies["movieId"].map(_links(ml / "links.csv", item_ids)).astype("Int64")
        if posters:
            image = _poster_paths(root / "posters", tmdb_ids)
        if overviews:
            tmdb_file = require_file(root / _TMDB_FILE, "the TMDB text file (or pass overviews=False)")
            extra = _tmdb_text(tmdb_file)
            text.update({field: text_list(tmdb_ids.map(values)) for field, values in extra.items()})
    return Dataset(
        name=root.name,
        user_ids=user_ids,
        item_ids=item_ids,
        interactions=inter,
        content=ItemContent(text=text, image=image, features={"genres": _genre_matrix(movies["genres"])}),
    )


def _genre_matrix(genres: pd.Series) -> np.ndarray:
    """Multi-hot genres: cheap item vectors for intra-list diversity and content baselines."""
    dummies = genres.str.get_dummies("|").drop(columns="(no genres listed)", errors="ignore")
    return dummies.to_numpy(dtype=np.float32)


def _movies(table: Table) -> pd.DataFrame:
    table.require("movieId", "title", "genres")
    ids = table.integers("movieId")
    table.reject(ids.duplicated(), "movieId", "movie {value} is listed twice")
    return table.frame.assign(movieId=ids).sort_values("movieId", kind="stable").reset_index(drop=True)


def _ratings(path: Path, item_ids: np.ndarray, min_rating: float | None) -> tuple[Interactions, np.ndarray]:
    table = read_table(path, "the MovieLens ratings (ratings.csv)")
    table.require("userId", "movieId", "rating", "timestamp")
    users = table.integers("userId")
    item = pd.Index(item_ids).get_indexer(table.integers("movieId"))
    table.reject(item < 0, "movieId", "movie {value} is not in movies.csv")
    value = table.numbers("rating").to_numpy()
    timestamp = table.timestamps("timestamp")
    keep = np.ones(len(value), dtype=bool) if min_rating is None else value >= min_rating
    if not keep.any():
        raise DataError(f"no rating is >= min_rating={min_rating}", file=path, field="rating")
    user, user_ids = pd.factorize(users[keep], sort=True)
    inter = Interactions(user, item[keep], value[keep], len(user_ids), len(item_ids), timestamp[keep])
    return inter, np.asarray(user_ids)


def _tags(path: Path, item_ids: np.ndarray) -> pd.Series:
    """movieId -> its tags joined by ', ', each tag once (first spelling kept)."""
    table = read_table(path, "the MovieLens tags (tags.csv)", allow_empty=True)
    table.require("movieId", "tag")
    if table.frame.empty:
        return pd.Series(dtype=object)
    movie = table.integers("movieId")
    table.reject(~movie.isin(item_ids), "movieId", "movie {value} is not in movies.csv")
    tags = pd.DataFrame({"movieId": movie, "tag": table.frame["tag"].astype("string").str.strip()})
    tags = tags[tags["tag"].fillna("") != ""]
    tags = tags.assign(key=tags["tag"].str.lower()).drop_duplicates(["movieId", "key"])
    return tags.groupby("movieId", sort=False)["tag"].agg(", ".join)


def _links(path: Path, item_ids: np.ndarray) -> pd.Series:
    """movieId -> tmdbId (nullable: a few movies have none)."""
    table = read_table(path, "the MovieLens links (links.csv, or pass posters=False, overviews=False)")
    table.require("movieId", "tmdbId")
    movie = table.integers("movieId")
    table.reject(movie.duplicated(), "movieId", "movie {value} is listed twice")
    tmdb = table.numbers("tmdbId", required=False)
    table.reject(tmdb.notna() & (tmdb % 1 != 0), "tmdbId", "{value} is not an integer")
    return pd.Series(tmdb.to_numpy(), index=movie)


def _poster_paths(folder: Path, tmdb_ids: pd.Series) -> list[str | None]:
    folder = require_dir(folder, "the poster folder posters/<tmdbId>.jpg (or pass posters=False)")
    names = tmdb_ids.astype("string") + ".jpg"
    found = names.isin(os.listdir(folder)).fillna(False)
    return text_list((str(folder.resolve()) + os.sep + names).where(found))


def _tmdb_text(path: Path) -> dict[str, pd.Series]:
    """Text fields keyed by TMDB id; `keywords` arrives as JSON [{"id":.., "name":..}] and leaves as names."""
    table = read_table(path, "the TMDB text file")
    table.require("id", "overview")
    ids = table.integers("id")
    fields = {c: table.frame[c] for c in ("overview", "tagline") if c in table.columns}
    if "keywords" in table.columns:
        keywords = table.frame["keywords"].map(_names, na_action="ignore")
        table.reject(keywords.isin([_BAD]), "keywords", 'expected JSON like [{"name": "..."}], got {value}')
        fields["keywords"] = keywords
    first = ~ids.duplicated().to_numpy()
    return {name: pd.Series(values.to_numpy()[first], index=ids[first]) for name, values in fields.items()}


def _names(cell: str) -> str | None:
    try:
        return ", ".join(str(entry["name"]) for entry in json.loads(cell)) or None
    except (ValueError, TypeError, KeyError):
        return _BAD
