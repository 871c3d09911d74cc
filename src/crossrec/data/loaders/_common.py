"""Shared reading helpers: every user mistake becomes a DataError naming the file, row and field.

Row numbers are what a user sees in the file: 1-based line numbers in CSV / TSV / DAT / JSONL files,
where a CSV or TSV header is line 1 (so the first data row is row 2; DAT files have no header), and
the 1-based record number in Parquet. Blank lines are counted, so row numbers stay right after them;
quoted fields that span several lines shift the count.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossrec.errors import ConfigError, DataError

_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}
# Format -> default separator (None: not a delimited text format).
TABLE_FORMATS: dict[str, str | None] = {"csv": ",", "tsv": "\t", "dat": "::", "parquet": None, "jsonl": None}
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".inter": "tsv",
    ".dat": "dat",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        kind = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"expected {what} here, but the path {kind}", file=path)
    return path


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        kind = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"expected {what} here, but the path {kind}", file=path)
    return path


@dataclass(frozen=True)
class Table:
    """A file's rows; the frame's index keeps each row's position so errors cite the row a user sees."""

    path: Path
    frame: pd.DataFrame
    first_row: int

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def require(self, *columns: str) -> None:
        for column in columns:
            if column not in self.frame.columns:
                found = ", ".join(self.columns) or "none"
                message = f"missing column '{column}' (columns found: {found})"
                raise DataError(message, file=self.path, field=column)

    def reject(self, bad: pd.Series | np.ndarray, column: str, problem: str) -> None:
        """Raise for the first row where `bad` holds; `{value}` in `problem` becomes the cell's text."""
        bad = np.asarray(bad, dtype=bool)
        if not bad.any():
            return
        first = int(np.argmax(bad))
        label = self.frame.index[first]
        count = int(bad.sum())
        more = f" ({count} rows have this problem)" if count > 1 else ""
        cell = self.frame.at[label, column]
        message = problem.replace("{value}", repr(cell) if isinstance(cell, str) else str(cell)) + more
        raise DataError(message, file=self.path, row=self.first_row + int(label), field=column)

    def numbers(self, column: str, *, required: bool = True) -> pd.Series:
        """Float values; empty cells are an error when `required`, NaN otherwise."""
        raw = self.frame[column]
        if required:
            self.reject(raw.isna(), column, "the value is empty")
        num = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        self.reject(raw.notna() & ~np.isfinite(num), column, "{value} is not a number")
        return num

    def integers(self, column: str, *, minimum: int | None = None) -> pd.Series:
        num = self.numbers(column)
        self.reject(num % 1 != 0, column, "{value} is not an integer")
        if minimum is not None:
            self.reject(num < minimum, column, "{value} is below " + str(minimum))
        return num.astype(np.int64)

    def ids(self, column: str) -> pd.Series:
        """Raw ids: int64 when every id is an integer (so '7' in a CSV matches 7 in Parquet), else str."""
        raw = self.frame[column]
        self.reject(raw.isna(), column, "the id is empty")
        num = pd.to_numeric(raw, errors="coerce")
        if num.notna().all() and (num % 1 == 0).all():
            return num.astype(np.int64)
        return raw.astype(str).str.strip()

    def timestamps(self, column: str) -> np.ndarray:
        """Seconds since 1970 (UTC), from numbers, datetime columns or ISO-8601 strings."""
        raw = self.frame[column]
        self.reject(raw.isna(), column, "the timestamp is empty")
        if pd.api.types.is_datetime64_any_dtype(raw):
            return _epoch_seconds(raw).to_numpy(np.int64)
        num = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        words = num.isna()
        if words.any():
            dates = pd.to_datetime(raw[words].astype(str), errors="coerce", utc=True, format="ISO8601")
            num[words] = _epoch_seconds(dates)
        self.reject(~np.isfinite(num), column, "{value} is neither seconds since 1970 nor an ISO date")
        return num.to_numpy(np.int64)


def _epoch_seconds(dates: pd.Series) -> pd.Series:
    if dates.dt.tz is None:
        dates = dates.dt.tz_localize("UTC")
    return (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def table_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"cannot tell the table format from the file name ({', '.join(_FORMATS)}); "
            f"pass the format option ({', '.join(TABLE_FORMATS)})",
            file=path,
        )
    return fmt


def read_table(
    path: str | Path,
    what: str,
    *,
    allow_empty: bool = False,
    format: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> Table:
    """Read CSV / TSV / DAT / Parquet / JSONL, by `format` or else by extension. CSV cells stay
    strings, so ids keep their spelling and bad numbers are found (and located) by the caller, not
    lost to NaN. `sep` replaces a text format's separator (any string, taken literally). A DAT file
    (MovieLens 1M / 10M: `1::1193::5::978300760`) has no header row: its columns are named by
    position, "1", "2", ... as a user counts them, and its first line is row 1."""
    path = require_file(path, what)
    fmt = format if format is not None else table_format(path)
    if fmt not in TABLE_FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; choose one of {', '.join(TABLE_FORMATS)}")
    if sep is not None and TABLE_FORMATS[fmt] is None:
        delimited = ", ".join(f for f, default in TABLE_FORMATS.items() if default)
        raise ConfigError(f"the sep option applies to {delimited}, not {fmt}")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding=encoding)
        else:
            sep = sep or TABLE_FORMATS[fmt]
            frame = pd.read_csv(
                path,
                sep=sep if len(sep) == 1 else re.escape(sep),
                engine="c" if len(sep) == 1 else "python",  # pandas reads longer separators as regexes
                header=None if fmt == "dat" else "infer",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                encoding=encoding,
            )
            if fmt == "dat":
                frame.columns = [str(i + 1) for i in range(frame.shape[1])]
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError, TypeError) as exc:
        raise DataError(f"cannot read {what} as {fmt}: {str(exc).strip()}", file=path) from None
    frame = frame.reset_index(drop=True).dropna(how="all")
    if frame.empty and not allow_empty:
        raise DataError(f"{what} has no data rows", file=path)
    return Table(path, frame, first_row=2 if fmt in ("csv", "tsv") else 1)


def text_list(values: pd.Series) -> list[str | None]:
    """One entry per row; empty or missing cells become None."""
    text = values.astype("string").str.strip()
    text = text.mask((text == "").fillna(False))
    return text.astype(object).where(text.notna(), None).tolist()


def feature_file_paths(
    folder: Path, feature_files: Mapping[str, str | Path] | None, *, discover: bool = True
) -> dict[str, Path]:
    """Feature name -> .npy file: `feature_files` (relative paths resolve against `folder`) when given,
    else with `discover` every `<name>_feat.npy` in `folder` (image_feat.npy -> "image"). Other .npy
    files in `folder` are named in a warning with the option that maps them: skipping them silently
    left a run without its features, to fail only at fit time."""
    if feature_files is not None:
        chosen = {str(name): folder / file for name, file in feature_files.items()}
        rule = "not in the feature_files option"
    elif discover:
        chosen = {p.name[: -len("_feat.npy")]: p for p in sorted(folder.glob("*_feat.npy"))}
        rule = "only <name>_feat.npy files are found without the feature_files option"
    else:
        chosen, rule = {}, "this format reads .npy files only through the feature_files option"
    used = {path.resolve() for path in chosen.values()}
    unused = [p for p in sorted(folder.glob("*.npy")) if p.resolve() not in used]
    if unused:
        example = ", ".join(f"{p.stem}: {p.name}" for p in unused)
        warnings.warn(
            f"{folder}: not reading {', '.join(p.name for p in unused)} ({rule}); to use them, map "
            f"feature names to files in the dataset options, e.g. feature_files: {{{example}}}",
            stacklevel=3,
        )
    return chosen


def read_npy(path: str | Path, name: str) -> np.ndarray:
    """A numeric .npy matrix as float32 (float16 files are widened); rows are checked by the caller."""
    path = require_file(path, f"the '{name}' feature matrix (.npy)")
    try:
        mat = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read as a .npy array: {exc}", file=path, field=name) from None
    if not isinstance(mat, np.ndarray) or not np.issubdtype(mat.dtype, np.number):
        raise DataError("expected one numeric .npy array", file=path, field=name)
    return np.ascontiguousarray(mat, dtype=np.float32)
