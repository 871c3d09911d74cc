"""Small real slices for the model tests: each fits in seconds on 2 cores."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crossrec.data.schema import Interactions, Split


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Slices this small gain nothing from threads, and on a shared machine idle threads spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _slice(matrix: sp.spmatrix, users: np.ndarray, items: np.ndarray) -> Interactions:
    return Interactions.from_matrix(sp.csr_matrix(matrix)[users][:, items])


@pytest.fixture(scope="session")
def tiktok_slice(_tiktok: tuple[Split, np.ndarray]) -> Split:
    return _tiktok[0]


@pytest.fixture(scope="session")
def tiktok_features(_tiktok: tuple[Split, np.ndarray], shared_data: Path) -> dict[str, np.ndarray]:
    """The image and audio features of the slice's items (rows follow the slice's item order)."""
    items, folder = _tiktok[1], shared_data / "diffmm" / "tiktok"
    return {m: np.load(folder / f"{m}_feat.npy")[items].astype(np.float32) for m in ("image", "audio")}


@pytest.fixture(scope="session")
def _tiktok(shared_data: Path, missing_input: Callable[[str], NoReturn]) -> tuple[Split, np.ndarray]:
    """1,500 random TikTok users (a fixed draw) and the items they met in training, with their
    shipped valid / test rows: the real sparsity and popularity skew at a size that trains in seconds."""
    folder = shared_data / "diffmm" / "tiktok"
    if not (folder / "trnMat.pkl").exists():
        missing_input(f"DiffMM TikTok data not found under {folder}")
    mats = {}
    for part, name in (("train", "trnMat"), ("valid", "valMat"), ("test", "tstMat")):
        with open(folder / f"{name}.pkl", "rb") as fh:
            mats[part] = sp.csr_matrix(pickle.load(fh))
    rng = np.random.default_rng(0)
    users = np.sort(rng.choice(mats["train"].shape[0], size=1500, replace=False))
    items = np.flatnonzero(np.asarray(mats["train"][users].sum(axis=0)).ravel() > 0)
    parts = {part: _slice(mat, users, items) for part, mat in mats.items()}
    return Split(**parts, name="tiktok-slice"), items
