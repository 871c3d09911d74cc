"""Generic tables (CSV / TSV / DAT / Parquet / JSONL): who interacted with what, plus an item catalog."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.data.loaders._common import Table, feature_file_paths, read_npy, read_table, text_list
from crossrec.data.schema import Dataset, Interactions, ItemContent, check_feature_matrix
from crossrec.errors import ConfigError

INTERACTION_KEYS = ("user", "item", "value", "timestamp")
MEDIA_KEYS = ("image", "audio")


def load_table(
    interactions: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    items: str | Path | None = None,
    item_columns: Mapping[str, str] | None = None,
    feature_files: Mapping[str, str | Path] | None = None,
    base_dir: str | Path | None = None,
    name: str | None = None,
    format: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Load an interactions table, the reader chosen by `format` (csv, tsv, dat, parquet, jsonl) or else
    by extension (.csv, .tsv, .dat, .parquet, .jsonl, ...); `format`, `sep` (a text format's separator,
    taken literally) and `encoding` apply to the items table too. A .dat file is MovieLens 1M's
    `user::item::rating::timestamp` without a header: its columns are named "1", "2", ... by position,
    e.g. columns={"user": "1", "item": "2", "value": "3", "timestamp": "4"}.

    `columns` maps our names to the file's columns: user and item (default "user", "item"), and
    optionally value (else every value is 1.0) and timestamp (seconds, datetime or ISO-8601 strings).
    Ids that are all integers are read as int64, so "7" in a CSV and 7 in Parquet are the same id.

    Item order, which feature rows must follow: with `items` (a catalog table, so items nobody
    interacted with still exist), the catalog's row order; without it, sorted item ids.
    `item_columns` maps "id" (default: the interactions' item column name), "image" and "audio"
    (file paths; must exist; empty cells mean none) and any other key -> a text field of that name.
    `feature_files` maps a feature name to a .npy matrix with one row per item; other .npy files in
    `base_dir` (or beside the interactions file) are named in a warning.

    Relative paths (files, and the image / audio cells) resolve against `base_dir` when given;
    otherwise files resolve against the working directory and media cells against the items file's
    folder. Errors cite 1-based rows as an editor shows them: a CSV / TSV header is row 1.
    """
    cols = _column_map(columns)
    base = Path(base_dir) if base_dir is not None else None
    inter_path = _resolve(interactions, base)
    reading = {"format": format, "sep": sep, "encoding": encoding}
    table = read_table(inter_path, "the interactions table", **reading)
    table.require(*cols.values())
    users = table.ids(cols["user"])
    raw_items = table.ids(cols["item"])
    value = table.numbers(cols["value"]).to_numpy() if "value" in cols else np.ones(len(users))
    timestamp = table.timestamps(cols["timestamp"]) if "timestamp" in cols else None

    content = ItemContent()
    if items is None:
        item, item_ids = pd.factorize(raw_items, sort=True)
    else:
        items_path = _resolve(items, base)
        spec = {"id": cols["item"], **(item_columns or {})}
        catalog = read_table(items_path, "the items table", **reading)
        item_ids, content = _catalog(catalog, spec, base or items_path.parent)
        catalog_ids, raw_items = _same_id_type(pd.Index(item_ids), raw_items)
        item = catalog_ids.get_indexer(raw_items)
        table.reject(item < 0, cols["item"], "item {value} is not in the items table " + items_path.name)
    n_items = len(item_ids)
    # Resolved here (against base_dir or the working directory); .npy files left out beside the
    # data are named in a warning.
    files = None
    if feature_files is not None:
        files = {feature: _resolve(file, base).absolute() for feature, file in feature_files.items()}
    for feature, path in feature_file_paths(base or inter_path.parent, files, discover=False).items():
        content.features[feature] = read_npy(path, feature)
        check_feature_matrix(content.features[feature], n_items, source=str(path), name=feature)

    user, user_ids = pd.factorize(users, sort=True)
    return Dataset(
        name=name or inter_path.stem,
        user_ids=np.asarray(user_ids),
        item_ids=np.asarray(item_ids),
        interactions=Interactions(user, item, value, len(user_ids), n_items, timestamp),
        content=content,
    )


def _column_map(columns: Mapping[str, str] | None) -> dict[str, str]:
    cols = {"user": "user", "item": "item", **(columns or {})}
    unknown = sorted(set(cols) - set(INTERACTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown column key(s) {', '.join(unknown)}; use {', '.join(INTERACTION_KEYS)}")
    return cols


def _resolve(path: str | Path, base: Path | None) -> Path:
    path = Path(path)
    return base / path if base is not None and not path.is_absolute() else path


def _same_id_type(catalog: pd.Index, ids: pd.Series) -> tuple[pd.Index, pd.Series]:
    """Compare ids as text when one side has non-integer ids and the other does not."""
    if catalog.dtype.kind == ids.dtype.kind:
        return catalog, ids
    return catalog.astype(str), ids.astype(str)


def _catalog(table: Table, spec: Mapping[str, str], media_base: Path) -> tuple[np.ndarray, ItemContent]:
    table.require(*spec.values())
    ids = table.ids(spec["id"])
    table.reject(ids.duplicated(), spec["id"], "item {value} is listed twice")
    content = ItemContent(
        text={key: text_list(table.frame[col]) for key, col in spec.items() if key not in ("id", *MEDIA_KEYS)}
    )
    for key in MEDIA_KEYS:
        if key in spec:
            setattr(content, key, _media_paths(table, spec[key], media_base))
    return ids.to_numpy(), content


def _media_paths(table: Table, column: str, base: Path) -> list[str | None]:
    """Absolute paths of the listed files; a listed file that does not exist is an error, not a gap."""
    cells = text_list(table.frame[column])
    paths = [None if cell is None else os.path.abspath(base / cell) for cell in cells]
    missing = np.array([path is not None and not os.path.isfile(path) for path in paths], dtype=bool)
    table.reject(missing, column, f"file {{value}} does not exist (relative paths resolve against {base})")
    return paths
