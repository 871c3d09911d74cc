"""The one item-features type: a matrix plus a presence mask, from the encoders through align to the
models and into run bundles.

A modality's vectors come from an encoder (some items lack the input or failed to decode), from a
dataset's own feature files, or from the shared-space heads. Whatever the source, a consumer sees the
same thing: `matrix` (n_items, d) float32 with zero rows where `present` is False, and `source`
naming where the vectors came from (an encoder fingerprint, a file) so a bundle can tell which
encoder must embed a new item for it to land in the same space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from crossrec.errors import DataError


@dataclass(frozen=True)
class ItemFeatures:
    """One modality's vectors for every item, and which items have them."""

    matrix: np.ndarray
    present: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        present = np.asarray(self.present, dtype=bool)
        if matrix.ndim != 2:
            raise DataError(
                f"feature matrix must be 2-d, got shape {matrix.shape}", field=self.source or None
            )
        if present.shape != (matrix.shape[0],):
            raise DataError(
                f"presence mask has shape {present.shape} for {matrix.shape[0]} rows",
                field=self.source or None,
            )
        if not np.isfinite(matrix[present]).all():
            bad = int(np.flatnonzero(present & ~np.isfinite(matrix).all(axis=1))[0])
            raise DataError(
                f"present feature row {bad} holds NaN or infinity", row=bad + 1, field=self.source or None
            )
        if (~present).any() and matrix[~present].any():
            matrix = matrix.copy()
            matrix[~present] = 0.0
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "present", present)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, source: str = "") -> ItemFeatures:
        """Features from a bare matrix: rows that are all zero or hold NaN count as absent (the two
        conventions older files and callers use for a missing modality)."""
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise DataError(f"feature matrix must be 2-d, got shape {matrix.shape}", field=source or None)
        finite = np.isfinite(matrix).all(axis=1)
        present = finite & (np.abs(np.nan_to_num(matrix)).sum(axis=1) > 0)
        return cls(np.where(present[:, None], np.nan_to_num(matrix), 0.0), present, source)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0]

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def take(self, rows: np.ndarray) -> ItemFeatures:
        """The features of `rows` (item indices), in that order."""
        return ItemFeatures(self.matrix[rows], self.present[rows], self.source)

    def append(self, other: ItemFeatures) -> ItemFeatures:
        """These items followed by `other`'s (new items joining a catalogue)."""
        if other.dim != self.dim:
            raise DataError(f"cannot append {other.dim}-d features to {self.dim}-d ones", field=self.source)
        return ItemFeatures(
            np.concatenate([self.matrix, other.matrix]),
            np.concatenate([self.present, other.present]),
            self.source,
        )


FeatureSet = Mapping[str, ItemFeatures]


def as_feature_set(features: Mapping[str, ItemFeatures | np.ndarray] | None) -> dict[str, ItemFeatures]:
    """Coerce a mapping whose values may be bare matrices (a convenience for callers and tests)."""
    out: dict[str, ItemFeatures] = {}
    for name, value in (features or {}).items():
        out[name] = value if isinstance(value, ItemFeatures) else ItemFeatures.from_matrix(value, name)
    return out
