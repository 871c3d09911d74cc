"""DiffMM benchmark folders (TikTok, Amazon Baby / Sports): pickled train/valid/test matrices + features."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossrec.data.loaders._common import feature_file_paths, read_npy, require_dir, require_file
from crossrec.data.schema import Dataset, Interactions, ItemContent, Split, check_feature_matrix
from crossrec.errors import DataError

MATRIX_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_SPARSE_CLASSES = {"coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array", "csc_array"}


def load_diffmm(path: str | Path, feature_files: Mapping[str, str | Path] | None = None) -> Dataset:
    """Load a DiffMM folder: trnMat.pkl / valMat.pkl / tstMat.pkl (users x items) and feature matrices
    (rows = item indices, float16 widened to float32): `feature_files` maps names to .npy files
    relative to the folder; by default every `<modality>_feat.npy`, other .npy files being named in
    a warning.

    The three matrices become the shipped split (name "shipped"); `interactions` is their union.
    Ids are the matrix indices. Overlapping (user, item) pairs between two parts are an error: they
    would let a model see test answers in training.
    """
    folder = require_dir(path, "a DiffMM dataset folder (trnMat.pkl, valMat.pkl, tstMat.pkl)")
    mats = {
        part: _read_matrix(require_file(folder / name, f"the DiffMM {part} matrix"))
        for part, name in MATRIX_FILES.items()
    }
    shapes = {mat.shape for mat in mats.values()}
    if len(shapes) > 1:
        found = ", ".join(f"{MATRIX_FILES[p]} {m.shape[0]}x{m.shape[1]}" for p, m in mats.items())
        raise DataError(f"train, valid and test matrices must have one shape, found {found}", file=folder)
    n_users, n_items = shapes.pop()
    _check_disjoint(mats, folder)
    parts = {part: Interactions.from_matrix(mat) for part, mat in mats.items()}
    features = {}
    for name, file in feature_file_paths(folder, feature_files).items():
        features[name] = read_npy(file, name)
        check_feature_matrix(features[name], n_items, source=str(file), name=name)
    return Dataset(
        name=folder.name,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        interactions=parts["train"].concat(parts["valid"]).concat(parts["test"]),
        content=ItemContent(features=features),
        split=Split(parts["train"], parts["valid"], parts["test"], name="shipped"),
    )


class _SparseUnpickler(pickle.Unpickler):
    """Unpickling runs code: allow only the numpy and scipy.sparse classes a sparse matrix is made of."""

    def find_class(self, module: str, name: str) -> Any:
        sparse = module.startswith("scipy.sparse") and name in _SPARSE_CLASSES
        if sparse or (module, name) in _NUMPY_GLOBALS:
            with warnings.catch_warnings():  # old pickles name deprecated modules (scipy.sparse.coo)
                warnings.simplefilter("ignore", DeprecationWarning)
                return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only sparse matrices are accepted")


def _read_matrix(path: Path) -> sp.coo_matrix:
    """A pickled users x items sparse matrix; explicit zeros are dropped (they are no interaction)."""
    try:
        with open(path, "rb") as fh:
            obj = _SparseUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise DataError(f"cannot read as a pickled scipy sparse matrix: {exc}", file=path) from None
    if not sp.issparse(obj) or obj.ndim != 2:
        raise DataError(f"expected a 2-d scipy sparse matrix, found {type(obj).__name__}", file=path)
    coo = sp.coo_matrix(obj)
    coo.sum_duplicates()
    coo.eliminate_zeros()
    return coo


def _check_disjoint(mats: dict[str, sp.coo_matrix], folder: Path) -> None:
    n_items = next(iter(mats.values())).shape[1]
    keys = {part: mat.row.astype(np.int64) * n_items + mat.col for part, mat in mats.items()}
    for a, b in combinations(MATRIX_FILES, 2):
        common = np.intersect1d(keys[a], keys[b], assume_unique=True)
        if len(common):
            user, item = divmod(int(common[0]), n_items)
            raise DataError(
                f"{len(common)} (user, item) pairs are in both {MATRIX_FILES[a]} and {MATRIX_FILES[b]} "
                f"(first: user {user}, item {item}); train, valid and test must be disjoint",
                file=folder / MATRIX_FILES[b],
            )
