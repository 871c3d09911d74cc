"""Loaders, one per source format, all returning a Dataset; `load_dataset` picks one by name (configs).

Every user mistake (missing file, column or id, unparsable cell, bad feature matrix) raises
DataError naming the file, the row as a user counts it (1-based; a CSV / TSV header is row 1,
so the first data row is row 2) and the field, or ConfigError for a bad option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossrec.data.loaders.diffmm import load_diffmm
from crossrec.data.loaders.mmrec import load_mmrec
from crossrec.data.loaders.movielens import load_movielens
from crossrec.data.loaders.table import load_table
from crossrec.data.schema import Dataset
from crossrec.errors import ConfigError
from crossrec.registry import Registry

LOADERS: Registry[Callable[..., Dataset]] = Registry("dataset format")
LOADERS.register("movielens", load_movielens)
LOADERS.register("diffmm", load_diffmm)
LOADERS.register("mmrec", load_mmrec)
LOADERS.register("table", load_table)


def load_dataset(format: str, path: str | Path, /, **options: Any) -> Dataset:
    """Load `path` with the loader registered as `format`; options are that loader's keywords
    (positional-only parameters, so a loader may take options named `format` or `path`)."""
    loader = LOADERS[format]
    signature = inspect.signature(loader)
    try:
        signature.bind(path, **options)
    except TypeError as exc:
        accepted = ", ".join(list(signature.parameters)[1:])
        raise ConfigError(f"bad options for format '{format}' ({exc}); it accepts: {accepted}") from None
    return loader(path, **options)


__all__ = ["LOADERS", "load_dataset", "load_diffmm", "load_mmrec", "load_movielens", "load_table"]
