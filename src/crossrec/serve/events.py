"""The events of the serving log: feedback, item upserts and deletions, each validated on creation
(a bad event raises DataError naming the field), and an event with its place in the log."""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

import numpy as np

from crossrec.errors import DataError

FeedbackKind = Literal["click", "rating", "play"]
FEEDBACK_KINDS: tuple[str, ...] = get_args(FeedbackKind)


def _require_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"must be a non-empty string, got {value!r}", field=name)
    return value


def _require_finite(value: object, name: str) -> float:
    if not isinstance(value, numbers.Real):
        raise DataError(f"must be a number, got {value!r}", field=name)
    if not math.isfinite(value):
        raise DataError(f"must be finite, got {value}", field=name)
    return float(value)


def _vector(name: object, value: object) -> np.ndarray:
    """A read-only float32 copy of one modality's vector, so a logged record cannot change afterwards."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"a modality name must be a non-empty string, got {name!r}", field="vectors")
    where = f"vectors.{name}"
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise DataError(f"must hold numbers, got dtype {array.dtype}", field=where)
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"must be a non-empty 1-D vector, got shape {array.shape}", field=where)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError("holds NaN or infinite values (or values beyond float32)", field=where)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class FeedbackEvent:
    """One user's feedback on one item. `value` is the rating for "rating", else a weight (1 for a click,
    e.g. seconds for "play"); `ts` is Unix seconds, stamped on arrival unless the client knows better."""

    user_id: str
    item_id: str
    kind: FeedbackKind
    value: float = 1.0
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        _require_id(self.user_id, "user_id")
        _require_id(self.item_id, "item_id")
        if self.kind not in FEEDBACK_KINDS:
            raise DataError(f"must be one of {', '.join(FEEDBACK_KINDS)}, got {self.kind!r}", field="kind")
        object.__setattr__(self, "value", _require_finite(self.value, "value"))
        object.__setattr__(self, "ts", _require_finite(self.ts, "ts"))


@dataclass(frozen=True, eq=False)
class ItemRecord:
    """An item's whole state from now on: `payload` a JSON object (title, text fields, genres / tags, media
    file names), `vectors` float32 content vectors by modality. An upsert replaces the previous state of
    the item; it does not merge into it."""

    item_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_id(self.item_id, "item_id")
        if not isinstance(self.payload, Mapping):
            raise DataError(f"must be a JSON object, got {type(self.payload).__name__}", field="payload")
        try:
            text = json.dumps(dict(self.payload), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"must be JSON (strings, finite numbers, lists, objects): {e}", field="payload"
            ) from e
        # A copy, and exactly what replay will give back (tuples become lists, keys strings).
        object.__setattr__(self, "payload", json.loads(text))
        if not isinstance(self.vectors, Mapping):
            raise DataError(
                f"must map modality -> vector, got {type(self.vectors).__name__}", field="vectors"
            )
        object.__setattr__(self, "vectors", {name: _vector(name, v) for name, v in self.vectors.items()})

    def __eq__(self, other: object) -> bool:
        """Same id, payload and modalities, with bit-identical vectors (dataclass equality cannot compare
        arrays)."""
        if not isinstance(other, ItemRecord):
            return NotImplemented
        return (
            self.item_id == other.item_id
            and self.payload == other.payload
            and self.vectors.keys() == other.vectors.keys()
            and all(v.tobytes() == other.vectors[name].tobytes() for name, v in self.vectors.items())
        )


@dataclass(frozen=True)
class ItemDeleted:
    """An item leaves the catalogue (a later upsert brings it back)."""

    item_id: str

    def __post_init__(self) -> None:
        _require_id(self.item_id, "item_id")


Event = FeedbackEvent | ItemRecord | ItemDeleted


class Logged(NamedTuple):
    """An event with its place in the log."""

    seq: int
    event: Event
