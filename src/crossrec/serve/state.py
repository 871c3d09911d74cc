"""What a server holds in memory: a run bundle's model, the item and user vectors it serves, an ANN
index over the items, the users' histories, and the changes live traffic makes to them.

Feedback folds the user's whole history into a new user vector at once (the model's `fold_in`), so
the next request already reflects it, for known and brand-new user ids alike. A new item's content
is encoded by the bundle's own encoders (their fingerprints must match the ones the bundle's
features came from), mapped into the model's item space (`embed_items`) and indexed, so it can be
recommended and searched at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossrec.config import load_config
from crossrec.data.features import ItemFeatures
from crossrec.errors import ConfigError, CrossrecError
from crossrec.experiment.bundle import Bundle, load_bundle
from crossrec.models import MODELS
from crossrec.models.base import EmbeddingRecommender
from crossrec.serve.events import FeedbackEvent, ItemDeleted, ItemRecord
from crossrec.serve.index import VectorIndex
from crossrec.serve.store import EventStore


class UnknownId(CrossrecError, KeyError):
    """A user or item id the server does not know (an HTTP 404 naming the id)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Feedback:
    user_id: str
    item_id: str
    kind: str = "click"
    value: float = 1.0


@dataclass
class NewItem:
    """An item added while serving: its table row and, per feature name, its vector (or None)."""

    item_id: str
    row: dict[str, Any]
    features: dict[str, np.ndarray | None] = field(default_factory=dict)


class ServingState:
    """Thread-safe: every mutation holds one lock; reads see a consistent snapshot of the arrays."""

    def __init__(self, bundle: Bundle, *, exact_below: int = 20_000) -> None:
        model = bundle.model
        if not isinstance(model, EmbeddingRecommender):
            raise ConfigError(f"{type(model).__name__} does not score by dot products: it cannot be served")
        self.bundle = bundle
        self.model = model
        self._lock = threading.RLock()
        self.item_ids: list[str] = [str(i) for i in bundle.item_ids]
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.items: list[dict[str, Any]] = list(bundle.items)
        self.user_ids: list[str] = [str(u) for u in bundle.user_ids]
        self.user_index = {user: i for i, user in enumerate(self.user_ids)}
        self.item_vectors = np.ascontiguousarray(model.item_vectors(), dtype=np.float32)
        self.user_vectors = np.ascontiguousarray(model.user_vectors(), dtype=np.float32)
        self.features: dict[str, ItemFeatures] = dict(bundle.features)
        split = bundle.split
        # Known history per user: what training saw (folded in on feedback) and everything seen.
        self._train = _rows(split.train.to_csr(binary=False))
        self._seen = _rows(split.train.concat(split.valid).concat(split.test).to_csr(binary=False))
        self.popularity = np.bincount(split.train.item, minlength=len(self.item_ids)).astype(np.int64)
        self.removed = np.zeros(len(self.item_ids), dtype=bool)  # deleted while serving
        self.index = VectorIndex(self.item_vectors.shape[1], exact_below=exact_below)
        self.index.set_probe(np.random.default_rng(0).permutation(self.user_vectors)[:512])  # picks the graph
        self.index.add(np.arange(len(self.item_ids)), self.item_vectors)
        self.last_feedback_at: float | None = None
        self.log_seq = 0  # the seq of the last event of the durable log applied here (`catch_up`)
        self.skipped_events: list[tuple[int, str]] = []  # (seq, why) of logged events not applied

    # -- lookups ---------------------------------------------------------------------------------
    def user(self, user_id: str) -> int:
        try:
            return self.user_index[str(user_id)]
        except KeyError:
            raise UnknownId(f"unknown user id '{user_id}'") from None

    def item(self, item_id: str) -> int:
        index = self.item_index.get(str(item_id))
        if index is None or self.removed[index]:
            raise UnknownId(f"unknown item id '{item_id}'")
        return index

    def seen(self, user: int) -> dict[int, float]:
        return self._seen[user] if user < len(self._seen) else {}

    def trained(self, user: int) -> dict[int, float]:
        """The history the user's vector was fitted on (training, then folded-in feedback)."""
        return self._train[user] if user < len(self._train) else {}

    @property
    def lock(self) -> threading.RLock:
        """Held by every mutation: hold it to read several fields as one consistent snapshot."""
        return self._lock

    # -- reads -----------------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        exclude_ids: Sequence[str] = (),
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[int, float]]:
        """Top `k` (item index, score) for a user; `where` keeps items whose field contains the value
        (e.g. {"genres": "Comedy"}), without losing k results."""
        with self._lock:
            user = self.user(user_id)
            query = self.user_vectors[user : user + 1]
            exclude = [self.item(i) for i in exclude_ids]
            if exclude_seen:
                exclude.extend(self.seen(user))
            allowed = self._allowed(where)
            ids, scores = self.index.search(
                query, k, exclude=[np.array(exclude, dtype=np.int64)], allowed=allowed
            )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def recommend_all(
        self, k: int = 10, *, batch: int = 1024
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Top `k` for every user, seen items excluded, as (users, ids (n, k), scores (n, k)) per batch
        of `batch` users: the same index and exclusions as `recommend`, one search per batch, so a
        batch job for all users costs users x one ANN query instead of users x items."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        for lo in range(0, len(self.user_ids), batch):
            with self._lock:
                users = np.arange(lo, min(lo + batch, len(self.user_ids)))
                exclude = [np.fromiter(self.seen(int(u)), dtype=np.int64) for u in users]
                ids, scores = self.index.search(self.user_vectors[users], k, exclude=exclude)
            yield users, ids, scores

    def similar(self, item_id: str, k: int = 10, modality: str | None = None) -> list[tuple[int, float]]:
        """Items nearest to one item: in the model's space (fused), or by one modality's features."""
        with self._lock:
            item = self.item(item_id)
            if modality is None:
                vectors = self.item_vectors
                ids, scores = self.index.search(vectors[item : item + 1], k, exclude=[np.array([item])])
                return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            feats = self._feature(modality)
            if not feats.present[item]:
                raise UnknownId(f"item '{item_id}' has no {modality} features")
            return self._nearest(feats, feats.matrix[item], k, self.removed, exclude=item)

    def nearest_by_feature(self, modality: str, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """Items whose `modality` features are nearest (cosine) to `vector` (cross-modal search)."""
        with self._lock:
            return self._nearest(self._feature(modality), vector, k, self.removed)

    def _feature(self, name: str) -> ItemFeatures:
        if name not in self.features:
            raise UnknownId(f"unknown modality '{name}'; the bundle has: {', '.join(self.features)}")
        return self.features[name]

    @staticmethod
    def _nearest(
        feats: ItemFeatures, vector: np.ndarray, k: int, removed: np.ndarray, exclude: int | None = None
    ) -> list[tuple[int, float]]:
        matrix = feats.matrix
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
        usable = feats.present & ~removed
        scores = np.where(usable, matrix @ vector / np.maximum(norms, 1e-12), -np.inf)
        if exclude is not None:
            scores[exclude] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in top if np.isfinite(scores[i])]

    def _allowed(self, where: Mapping[str, str] | None) -> np.ndarray | None:
        if not where:
            return None
        mask = np.ones(len(self.item_ids), dtype=bool)
        for name, wanted in where.items():
            needle = str(wanted).lower()
            mask &= np.array([needle in str(row.get(name) or "").lower() for row in self.items])
        return mask

    # -- writes ----------------------------------------------------------------------------------
    def apply_feedback(self, events: Sequence[Feedback]) -> set[str]:
        """Add events to the users' histories and fold each touched user's history into a new vector.
        A user id never seen before becomes a new user. Returns the touched user ids."""
        with self._lock:
            for event in events:
                item = self.item(event.item_id)
                user = self.user_index.get(event.user_id)
                if user is None:
                    user = self._new_user(event.user_id)
                self._train[user][item] = float(event.value)
                self._seen[user][item] = float(event.value)
                self.popularity[item] += 1
            touched = {e.user_id for e in events}
            rows = [self.user_index[u] for u in touched]
            if rows and self.model.can_fold_in:
                self.user_vectors[rows] = self.model.fold_in(self._history_matrix(rows), self.item_vectors)
            return touched

    def _new_user(self, user_id: str) -> int:
        user = len(self.user_ids)
        self.user_ids.append(user_id)
        self.user_index[user_id] = user
        self._train.append({})
        self._seen.append({})
        self.user_vectors = np.vstack(
            [self.user_vectors, np.zeros((1, self.user_vectors.shape[1]), np.float32)]
        )
        return user

    def _history_matrix(self, rows: Sequence[int]) -> sp.csr_matrix:
        data, indices, indptr = [], [], [0]
        for row in rows:
            history = self._train[row]
            indices.extend(history)
            data.extend(history.values())
            indptr.append(len(indices))
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(self.item_ids)), dtype=np.float32)

    def check_new_item(self, item: NewItem) -> dict[str, ItemFeatures]:
        """The item's features as the model reads them; ConfigError when it cannot be added (checked
        before the item is logged, so the log never holds an item the state would refuse)."""
        if not self.model.can_embed_content:
            raise ConfigError(f"{type(self.model).__name__} cannot place items it never saw (no content map)")
        known = self.item_index.get(item.item_id)
        if known is not None and known < len(self.bundle.item_ids):
            raise ConfigError(
                f"item '{item.item_id}' is part of the trained catalogue: it cannot be replaced"
            )
        features = {}
        for name, feats in self.features.items():
            vector = item.features.get(name)
            present = vector is not None
            row = (
                np.zeros((1, feats.dim), np.float32) if not present else np.asarray(vector, np.float32)[None]
            )
            if row.shape[1] != feats.dim:
                raise ConfigError(
                    f"feature '{name}' of item '{item.item_id}': {row.shape[1]} values, not {feats.dim}"
                )
            features[name] = ItemFeatures(row, np.array([present]), feats.source)
        return features

    def add_item(self, item: NewItem) -> int:
        """Index a new item (or replace an item added earlier) from its feature vectors."""
        with self._lock:
            features = self.check_new_item(item)
            known = self.item_index.get(item.item_id)
            vector = self.model.embed_items(features)[0].astype(np.float32)
            if known is None:
                known = len(self.item_ids)
                self.item_ids.append(item.item_id)
                self.item_index[item.item_id] = known
                self.items.append(item.row)
                self.item_vectors = np.vstack([self.item_vectors, vector[None]])
                self.popularity = np.append(self.popularity, 0)
                self.removed = np.append(self.removed, False)
                for name, feats in features.items():
                    self.features[name] = self.features[name].append(feats)
            else:
                self.items[known] = item.row
                self.item_vectors[known] = vector
                for name, feats in features.items():
                    old = self.features[name]
                    matrix, present = old.matrix.copy(), old.present.copy()
                    matrix[known], present[known] = feats.matrix[0], feats.present[0]
                    self.features[name] = ItemFeatures(matrix, present, old.source)
            self.removed[known] = False
            self.index.add(np.array([known]), vector[None])
            return known

    def remove_item(self, item_id: str) -> int:
        """Take an item out of recommendations, similar items and search (its history stays)."""
        with self._lock:
            index = self.item(item_id)
            self.removed[index] = True
            self.index.remove([index])
            return index

    # -- the durable log ------------------------------------------------------------------------
    def catch_up(self, store: EventStore) -> int:
        """Apply the log's events after `log_seq`, in log order (runs of feedback folded in
        together). A fresh state replays the whole log on start; each replica of a server calls it
        before a request, so every replica applies every replica's writes in the same order. Returns
        the number of events applied.

        Feedback on an item that is unknown or deleted at that point of the log (another replica
        deleted it between the check and the write) is not applied; it stays in the log and is
        listed in `skipped_events`."""
        if store.last_seq() == self.log_seq:  # the common case: one indexed read, no lock
            return 0
        with self._lock:
            pending: list[Feedback] = []
            applied, through = 0, self.log_seq

            def flush() -> None:  # log_seq moves only past what has been applied
                if pending:
                    self.apply_feedback(pending)
                    pending.clear()
                self.log_seq = through

            for logged in store.replay(self.log_seq):
                event = logged.event
                if isinstance(event, FeedbackEvent):
                    index = self.item_index.get(event.item_id)
                    if index is None or self.removed[index]:
                        self.skipped_events.append(
                            (logged.seq, f"feedback on unknown item '{event.item_id}'")
                        )
                    else:
                        pending.append(Feedback(event.user_id, event.item_id, event.kind, event.value))
                        applied += 1
                    through = logged.seq
                    continue
                flush()
                applied += 1
                if isinstance(event, ItemRecord):
                    self.add_item(NewItem(event.item_id, dict(event.payload), dict(event.vectors)))
                elif isinstance(event, ItemDeleted):
                    index = self.item_index.get(event.item_id)
                    if index is not None and not self.removed[index]:
                        self.remove_item(event.item_id)
                through = logged.seq
                flush()
            flush()
            return applied


def _rows(matrix: sp.csr_matrix) -> list[dict[int, float]]:
    matrix = sp.csr_matrix(matrix)
    return [
        dict(zip(matrix.indices[lo:hi].tolist(), matrix.data[lo:hi].tolist(), strict=True))
        for lo, hi in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
    ]


def load_servable(bundle_dir: str | Path, model: str | None = None) -> Bundle:
    """The bundle with `model`, or without one the best model by validation that can be served (a
    dot-product model: the best overall may be, say, ItemKNN, which scores without vectors)."""
    if model is not None:
        return load_bundle(bundle_dir, model)
    manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text(encoding="utf-8"))
    default = manifest.get("default_model")
    entries = manifest.get("models", {})
    servable = [
        label
        for label, entry in entries.items()
        if entry.get("model") in MODELS and issubclass(MODELS[entry["model"]], EmbeddingRecommender)
    ]
    if not servable:
        raise ConfigError(f"no model in {bundle_dir} scores by dot products: none can be served")
    if default in servable:
        return load_bundle(bundle_dir, default)
    metric = _selection_metric(bundle_dir)
    best = max(servable, key=lambda label: entries[label].get("valid", {}).get(metric, float("-inf")))
    return load_bundle(bundle_dir, best)


def _selection_metric(bundle_dir: str | Path) -> str:
    config = load_config(Path(bundle_dir) / "config.yaml")
    prefix = "" if config.eval.valid_on == "all" else f"{config.eval.valid_on}_"
    return prefix + config.eval.monitor
