"""The one typed dataset model every stage reads: ids mapped to dense indices once, at load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from crossrec.errors import DataError
from crossrec.io import atomic_path


@dataclass(frozen=True)
class Interactions:
    """(user, item, value, timestamp) rows over dense indices [0, n_users) x [0, n_items)."""

    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    n_users: int
    n_items: int
    timestamp: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", np.asarray(self.user, dtype=np.int64))
        object.__setattr__(self, "item", np.asarray(self.item, dtype=np.int64))
        object.__setattr__(self, "value", np.asarray(self.value, dtype=np.float32))
        if self.timestamp is not None:
            object.__setattr__(self, "timestamp", np.asarray(self.timestamp, dtype=np.int64))
        n = len(self.user)
        lengths = [len(self.item), len(self.value)]
        if self.timestamp is not None:
            lengths.append(len(self.timestamp))
        if any(length != n for length in lengths):
            raise ValueError("user, item, value and timestamp must have the same length")
        if n and (self.user.min() < 0 or self.user.max() >= self.n_users):
            raise ValueError(f"user index out of range [0, {self.n_users})")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise ValueError(f"item index out of range [0, {self.n_items})")

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_matrix(cls, matrix: sp.spmatrix) -> Interactions:
        coo = sp.coo_matrix(matrix)
        coo.sum_duplicates()
        return cls(coo.row, coo.col, coo.data, n_users=coo.shape[0], n_items=coo.shape[1])

    def select(self, mask: np.ndarray) -> Interactions:
        """The rows where `mask` holds (a boolean mask or an index array)."""
        ts = None if self.timestamp is None else self.timestamp[mask]
        return Interactions(
            self.user[mask], self.item[mask], self.value[mask], self.n_users, self.n_items, ts
        )

    def concat(self, other: Interactions) -> Interactions:
        if (self.n_users, self.n_items) != (other.n_users, other.n_items):
            raise ValueError("cannot concatenate interactions over different id spaces")
        ts = None
        if self.timestamp is not None and other.timestamp is not None:
            ts = np.concatenate([self.timestamp, other.timestamp])
        return Interactions(
            np.concatenate([self.user, other.user]),
            np.concatenate([self.item, other.item]),
            np.concatenate([self.value, other.value]),
            self.n_users,
            self.n_items,
            ts,
        )

    def to_csr(self, binary: bool = True) -> sp.csr_matrix:
        """User x item matrix; duplicates collapse to 1 (binary) or keep their last value."""
        data = np.ones(len(self), dtype=np.float32) if binary else self.value
        mat = sp.csr_matrix(
            (data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        mat.sum_duplicates()
        if binary:
            mat.data[:] = 1.0
        return mat

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)


def item_terms(value: object) -> set[str]:
    """The genres or tags of an item's cell ("Comedy, Drama", or a list of them) as lower-case terms:
    one reading of such cells for everything that compares them."""
    if value is None:
        return set()
    parts = value if isinstance(value, list) else str(value).split(",")
    return {str(p).strip().lower() for p in parts if str(p).strip()}


@dataclass
class ItemContent:
    """What we know about each item besides its id: one entry per item index, None when absent."""

    text: dict[str, list[str | None]] = field(default_factory=dict)
    image: list[str | None] | None = None
    audio: list[str | None] | None = None
    media: dict[str, list[str | None]] = field(default_factory=dict)  # other file inputs, e.g. video
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def check(self, n_items: int, source: str = "item content") -> None:
        for name, values in self.text.items():
            if len(values) != n_items:
                raise DataError(
                    f"has {len(values)} entries, expected {n_items} items", file=source, field=name
                )
        for name, paths in (("image", self.image), ("audio", self.audio), *self.media.items()):
            if paths is not None and len(paths) != n_items:
                raise DataError(
                    f"has {len(paths)} entries, expected {n_items} items", file=source, field=name
                )
        for name, mat in self.features.items():
            check_feature_matrix(mat, n_items, source=source, name=name)


def check_feature_matrix(mat: np.ndarray, n_items: int, *, source: str, name: str) -> None:
    """Feature rows are item indices: wrong row counts or non-finite values would misalign silently."""
    if mat.ndim != 2:
        raise DataError(f"feature matrix must be 2-d, got shape {mat.shape}", file=source, field=name)
    if mat.shape[0] != n_items:
        raise DataError(
            f"feature matrix has {mat.shape[0]} rows but the dataset has {n_items} items",
            file=source,
            field=name,
        )
    bad = ~np.isfinite(mat).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{int(bad.sum())} feature rows contain NaN or infinity (first: item index {first})",
            file=source,
            row=first + 1,
            field=name,
        )


@dataclass
class Split:
    """Train / valid / test over one id space; `cold_items` were held out of training entirely."""

    train: Interactions
    valid: Interactions
    test: Interactions
    name: str = "split"
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def summary(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "cold_items": len(self.cold_items),
        }

    def save(self, path: str | Path) -> Path:
        """Saved with the run, so its results can be reproduced exactly."""
        arrays: dict[str, np.ndarray] = {
            "shape": np.array([self.n_users, self.n_items]),
            "cold_items": self.cold_items,
            "name": np.array(self.name),
        }
        for part in ("train", "valid", "test"):
            inter: Interactions = getattr(self, part)
            arrays[f"{part}_user"] = inter.user
            arrays[f"{part}_item"] = inter.item
            arrays[f"{part}_value"] = inter.value
            if inter.timestamp is not None:
                arrays[f"{part}_timestamp"] = inter.timestamp
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        with np.load(path, allow_pickle=False) as z:
            n_users, n_items = (int(x) for x in z["shape"])
            parts = {}
            for part in ("train", "valid", "test"):
                ts = z.get(f"{part}_timestamp")
                parts[part] = Interactions(
                    z[f"{part}_user"], z[f"{part}_item"], z[f"{part}_value"], n_users, n_items, ts
                )
            return cls(**parts, name=str(z["name"]), cold_items=z["cold_items"])


@dataclass
class Dataset:
    """Users, items, their interactions and item content; `split` is set when the source ships one."""

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    interactions: Interactions
    content: ItemContent = field(default_factory=ItemContent)
    split: Split | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __post_init__(self) -> None:
        if (self.interactions.n_users, self.interactions.n_items) != (self.n_users, self.n_items):
            raise ValueError("interactions id space does not match user_ids / item_ids")
        self.content.check(self.n_items, source=self.name)

    def with_interactions(self, new_user_ids: np.ndarray, extra: Interactions) -> Dataset:
        """This dataset plus `extra` interactions (logged while serving) over its items and its users
        followed by `new_user_ids`; the content is unchanged."""
        user_ids = np.concatenate([self.user_ids.astype(str), np.asarray(new_user_ids, dtype=str)])
        if extra.n_users != len(user_ids) or extra.n_items != self.n_items:
            raise ValueError(
                f"extra interactions are {extra.n_users} x {extra.n_items}, "
                f"not {len(user_ids)} x {self.n_items}"
            )
        old = self.interactions
        widened = Interactions(old.user, old.item, old.value, len(user_ids), self.n_items, old.timestamp)
        if (old.timestamp is None) != (extra.timestamp is None):
            extra = Interactions(extra.user, extra.item, extra.value, extra.n_users, extra.n_items, None)
            widened = Interactions(old.user, old.item, old.value, len(user_ids), self.n_items, None)
        return Dataset(self.name, user_ids, self.item_ids, widened.concat(extra), self.content, None)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": len(self.interactions),
            "density": len(self.interactions) / max(1, self.n_users * self.n_items),
            "text_fields": sorted(self.content.text),
            "images": sum(p is not None for p in self.content.image or []),
            "audio": sum(p is not None for p in self.content.audio or []),
            "features": {k: list(v.shape) for k, v in self.content.features.items()},
            "shipped_split": self.split is not None,
        }
