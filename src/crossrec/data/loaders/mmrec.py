"""MMRec folders: `<name>.inter` (TSV; x_label 0/1/2 = train/valid/test) plus one .npy matrix per modality."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.loaders._common import (
    feature_file_paths,
    read_npy,
    read_table,
    require_dir,
    require_file,
)
from crossrec.data.schema import Dataset, Interactions, ItemContent, Split, check_feature_matrix
from crossrec.errors import DataError

SPLIT_LABELS = {0: "train", 1: "valid", 2: "test"}


def load_mmrec(
    path: str | Path,
    dataset_name: str | None = None,
    feature_files: Mapping[str, str | Path] | None = None,
) -> Dataset:
    """Load an MMRec folder. The interactions file is `<dataset_name>.inter`, by default
    `<folder name>.inter` or the folder's only .inter file: a TSV with columns userID, itemID, x_label
    and optionally rating (else value 1.0) and timestamp.

    `feature_files` maps feature names to .npy files relative to the folder (MMRec's own files are
    often named after their encoder: {"image": "image_feat.npy", "text": "all-MiniLM-L6-v2.npy"});
    by default every `<name>_feat.npy` is read, and other .npy files are named in a warning.

    MMRec item ids index the feature rows, so they must be integers 0..n_items-1, where n_items is the
    feature files' row count (or max itemID + 1 without features); item ids are kept as the indices.
    User ids are mapped to dense indices in sorted order. Errors cite .inter rows with the header as row 1.
    """
    folder = require_dir(path, "an MMRec dataset folder (<name>.inter plus .npy features)")
    inter_path = _inter_file(folder, dataset_name)
    table = read_table(inter_path, "the MMRec interactions (.inter, tab-separated)")
    table.require("userID", "itemID", "x_label")
    users = table.ids("userID")
    items = table.integers("itemID", minimum=0).to_numpy()
    labels = table.integers("x_label")
    table.reject(~labels.isin(list(SPLIT_LABELS)), "x_label", "{value} is not 0 (train), 1 (valid), 2 (test)")
    value = table.numbers("rating").to_numpy() if "rating" in table.columns else np.ones(len(items))
    timestamp = table.timestamps("timestamp") if "timestamp" in table.columns else None

    files = feature_file_paths(folder, feature_files)
    features = {name: read_npy(file, name) for name, file in files.items()}
    if features:
        first = next(iter(files))
        n_items = len(features[first])
        table.reject(
            items >= n_items,
            "itemID",
            f"item {{value}} has no row in {files[first].name} ({n_items} rows): item ids index feature rows",
        )
    else:
        n_items = int(items.max()) + 1
    for name, mat in features.items():
        check_feature_matrix(mat, n_items, source=str(files[name]), name=name)

    user, user_ids = pd.factorize(users, sort=True)
    inter = Interactions(user, items, value, len(user_ids), n_items, timestamp)
    parts = {name: inter.select(labels.to_numpy() == label) for label, name in SPLIT_LABELS.items()}
    return Dataset(
        name=inter_path.stem,
        user_ids=np.asarray(user_ids),
        item_ids=np.arange(n_items),
        interactions=inter,
        content=ItemContent(features=features),
        split=Split(**parts, name="shipped"),
    )


def _inter_file(folder: Path, dataset_name: str | None) -> Path:
    if dataset_name is not None:
        return require_file(folder / f"{dataset_name}.inter", f"the MMRec interactions of '{dataset_name}'")
    default = folder / f"{folder.name}.inter"
    if default.is_file():
        return default
    found = sorted(folder.glob("*.inter"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError("no <name>.inter file in this MMRec folder", file=folder)
    names = ", ".join(p.name for p in found)
    raise DataError(f"several .inter files ({names}); pass dataset_name to pick one", file=folder)
