"""Real data for the loader tests: the full sets once per session, and small slices written to tmp_path."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from crossrec.data.loaders import load_diffmm, load_movielens
from crossrec.data.loaders.diffmm import MATRIX_FILES
from crossrec.data.schema import Dataset

N_USERS = 300  # tiktok users kept in the small copies


@pytest.fixture(scope="session")
def movielens(shared_data: Path) -> Dataset:
    return load_movielens(shared_data / "movielens-small")


@pytest.fixture(scope="session")
def tiktok_parts(shared_data: Path) -> dict[str, sp.csr_matrix]:
    """The first N_USERS rows of the tiktok train / valid / test matrices."""
    split = load_diffmm(shared_data / "diffmm" / "tiktok").split
    return {part: getattr(split, part).to_csr()[:N_USERS] for part in MATRIX_FILES}


@pytest.fixture
def mini_diffmm(tmp_path: Path, tiktok_parts: dict[str, sp.csr_matrix], shared_data: Path) -> Path:
    """A DiffMM folder of the first tiktok users, with the real image features."""
    folder = tmp_path / "tiktok-mini"
    folder.mkdir()
    for part, name in MATRIX_FILES.items():
        with open(folder / name, "wb") as fh:
            pickle.dump(sp.coo_matrix(tiktok_parts[part]), fh)
    np.save(folder / "image_feat.npy", np.load(shared_data / "diffmm" / "tiktok" / "image_feat.npy"))
    return folder


@pytest.fixture
def mini_movielens(tmp_path: Path, shared_data: Path) -> Path:
    """The first 60 movies and the first 40 users' ratings of them, with posters and TMDB text."""
    src = shared_data / "movielens-small"
    root = tmp_path / "movielens-mini"
    ml = root / "ml-latest-small"
    ml.mkdir(parents=True)
    movies = pd.read_csv(src / "ml-latest-small" / "movies.csv").head(60)
    keep = movies["movieId"]
    for name in ("ratings", "tags", "links"):
        table = pd.read_csv(src / "ml-latest-small" / f"{name}.csv", dtype=str)
        table = table[table["movieId"].astype(int).isin(keep)]
        if "userId" in table:
            table = table[table["userId"].astype(int) <= 40]
        table.to_csv(ml / f"{name}.csv", index=False)
    movies.to_csv(ml / "movies.csv", index=False)
    (root / "posters").symlink_to(src / "posters")
    (root / "text_extra").mkdir()
    tmdb = pd.read_csv(src / "text_extra" / "tmdb_3000_movies.csv")
    links = pd.read_csv(ml / "links.csv")
    tmdb[tmdb["id"].isin(links["tmdbId"])].to_csv(root / "text_extra" / "tmdb_3000_movies.csv", index=False)
    return root


def _replace_cell(path: Path, line: int, column: str, value: str) -> None:
    sep = "\t" if path.suffix in (".tsv", ".inter") else ","
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(sep)
    cells[lines[0].split(sep).index(column)] = value
    lines[line - 1] = sep.join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def edit_cell() -> Callable[[Path, int, str, str], None]:
    """edit_cell(path, line, column, value) sets one cell of a simple CSV / TSV file (no quoted
    separators); `line` counts as an editor does, the header being line 1."""
    return _replace_cell
