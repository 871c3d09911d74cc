"""Full-ranking evaluation: every user is scored against every item, in batched matrix products.

Items the user met in training (and in validation, when testing) are masked out before top-k, so
a model is never rewarded for recalling what it was trained on. MMRec's protocol leaves validation
items rankable at test; `evaluator_for(..., protocol="mmrec")` reproduces it for side-by-side figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.eval import metrics as M
from crossrec.models.base import Recommender

# Which parts of the split are masked when the test split is ranked, per evaluation protocol.
MASKED_AT_TEST: dict[str, tuple[str, ...]] = {"crossrec": ("train", "valid"), "mmrec": ("train",)}
SCORE_BUDGET = 1 << 26  # scores held at once per batch (256 MB of float32), whatever the catalogue


def scoring_batch(n_items: int, most: int = 2048) -> int:
    """Users scored per batch: `most`, fewer when the catalogue is large, so one batch's users x
    items score block stays within SCORE_BUDGET (2048 users x 1M items would be 8 GB)."""
    return max(1, min(most, SCORE_BUDGET // max(n_items, 1)))


@dataclass
class RankingResult:
    """Mean metrics, per-user values (for paired tests) and the top-k lists behind them."""

    metrics: dict[str, float]
    users: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False)
    top_items: np.ndarray = field(repr=False)


class RankingEvaluator:
    """Evaluates any Recommender on `target` interactions; also a training-time Validator."""

    def __init__(
        self,
        target: Interactions,
        exclude: Sequence[Interactions] = (),
        ks: Sequence[int] = (10, 20),
        monitor: str = "recall@20",
        batch_size: int | None = None,
        item_popularity: np.ndarray | None = None,
        item_vectors: np.ndarray | None = None,
        candidate_items: np.ndarray | None = None,
        max_users: int | None = None,
        sample_seed: int = 0,
    ) -> None:
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise ValueError("ks must hold positive cut-offs")
        self.monitor = monitor
        self.n_users, self.n_items = target.n_users, target.n_items
        self.batch_size = batch_size or scoring_batch(self.n_items)
        self._target = target.to_csr()
        mask = sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32)
        for inter in exclude:
            mask = mask + inter.to_csr()
        self._exclude = mask.tocsr()
        self.users = np.flatnonzero(np.diff(self._target.indptr) > 0)
        self._popularity = None if item_popularity is None else torch.tensor(np.asarray(item_popularity))
        self._item_vectors = None if item_vectors is None else torch.tensor(np.asarray(item_vectors))
        self._candidates = None
        if candidate_items is not None:
            # Restrict ranking to a subset (e.g. cold items): everything else is masked out.
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[candidate_items] = True
            self._candidates = torch.as_tensor(~allowed)
            keep = self._target.multiply(allowed[None, :]).tocsr()
            keep.eliminate_zeros()
            self._target = keep
            self.users = np.flatnonzero(np.diff(keep.indptr) > 0)
        if max_users is not None:
            self.users = sample_users(self.users, max_users, sample_seed)

    def __call__(self, model: Recommender) -> dict[str, float]:
        return self.evaluate(model).metrics

    def evaluate(self, model: Recommender) -> RankingResult:
        return self.combine([self.evaluate_users(model, self.users)])

    def shards(self, n: int) -> list[np.ndarray]:
        """The evaluated users in `n` contiguous parts cut at batch boundaries, so each part scores
        the same batches as one `evaluate` and the parts combine to its result exactly."""
        batches = [self.users[s : s + self.batch_size] for s in range(0, len(self.users), self.batch_size)]
        cuts = np.array_split(np.arange(len(batches)), max(1, min(n, len(batches))))
        return [np.concatenate([batches[i] for i in part]) for part in cuts if len(part)]

    @torch.no_grad()
    def evaluate_users(
        self, model: Recommender, users: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-user metric values and top-k lists of `users` (part of `self.users`, in its order)."""
        kmax = self.ks[-1]
        per_user: dict[str, list[torch.Tensor]] = {}
        tops = []
        for start in range(0, len(users), self.batch_size):
            batch = users[start : start + self.batch_size]
            scores = model.score(batch).to(torch.float32)
            if scores.shape != (len(batch), self.n_items):
                raise ValueError(
                    f"{type(model).__name__}.score returned shape {tuple(scores.shape)}, "
                    f"expected ({len(batch)}, {self.n_items})"
                )
            scores = scores.clone() if scores.requires_grad else scores
            self._mask(scores, self._exclude, batch)
            if self._candidates is not None:
                scores.masked_fill_(self._candidates, -torch.inf)
            top = torch.topk(scores, kmax, dim=1, sorted=True).indices
            hits, n_rel = self._hits(batch, top)
            for k in self.ks:
                for name, fn in M.PER_USER.items():
                    per_user.setdefault(f"{name}@{k}", []).append(fn(hits, n_rel, k))
                if self._popularity is not None:
                    per_user.setdefault(f"novelty@{k}", []).append(
                        M.novelty(top, self._popularity, self.n_users, k)
                    )
                if self._item_vectors is not None:
                    per_user.setdefault(f"diversity@{k}", []).append(
                        M.intra_list_diversity(top, self._item_vectors, k)
                    )
            tops.append(top)
        top_all = torch.cat(tops) if tops else torch.zeros((0, kmax), dtype=torch.long)
        return {name: torch.cat(parts).numpy() for name, parts in per_user.items()}, top_all.numpy()

    def combine(self, parts: Sequence[tuple[dict[str, np.ndarray], np.ndarray]]) -> RankingResult:
        """One result from the parts of `shards` (in order): means over all users, coverage over all
        top-k lists."""
        names = parts[0][0].keys() if parts else ()
        values = {name: np.concatenate([p[0][name] for p in parts]) for name in names}
        top_all = (
            np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, self.ks[-1]), dtype=np.int64)
        )
        means = {name: float(v.mean()) for name, v in values.items()}
        for k in self.ks:
            means[f"coverage@{k}"] = (
                M.coverage(torch.as_tensor(top_all), self.n_items, k) if len(top_all) else 0.0
            )
        return RankingResult(means, self.users, values, top_all)

    @staticmethod
    def _mask(scores: torch.Tensor, matrix: sp.csr_matrix, users: np.ndarray) -> None:
        rows = matrix[users]
        if rows.nnz:
            r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
            scores[torch.as_tensor(r), torch.as_tensor(rows.indices, dtype=torch.long)] = -torch.inf

    def _hits(self, users: np.ndarray, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which top-k entries are targets, and how many targets each user has, straight from the
        sparse rows: a dense users x items target block cost a third of evaluation time."""
        rows = self._target[users]
        lengths = np.diff(rows.indptr)
        keys = torch.as_tensor(np.repeat(np.arange(len(users)), lengths) * self.n_items + rows.indices)
        top_keys = torch.arange(len(users)).unsqueeze(1) * self.n_items + top
        hits = torch.isin(top_keys, keys).to(torch.float64)
        return hits, torch.as_tensor(lengths, dtype=torch.float64)


def sample_users(users: np.ndarray, max_users: int, seed: int = 0) -> np.ndarray:
    """At most `max_users` of `users`, drawn without replacement by `seed`, in their order.

    Full ranking of every user costs users x items; on a fixed sample it grows with the catalogue
    alone, and the metrics are unbiased estimates of the all-users means. The same seed gives every
    model the same users, so paired tests still pair.
    """
    if max_users < 1:
        raise ValueError(f"max_users must be >= 1, got {max_users}")
    if len(users) <= max_users:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))


def evaluator_for(
    target: Interactions,
    train: Interactions,
    valid: Interactions | None = None,
    *,
    protocol: str = "crossrec",
    **kwargs: object,
) -> RankingEvaluator:
    """Full ranking under `protocol` (see MASKED_AT_TEST): training items are always masked; when
    testing (`valid` given), validation items too under "crossrec", not under "mmrec", so figures
    can be set beside MMRec's own."""
    if protocol not in MASKED_AT_TEST:
        known = ", ".join(MASKED_AT_TEST)
        raise ConfigError(f"unknown evaluation protocol '{protocol}'; choose one of {known}")
    exclude = [train] + ([valid] if valid is not None and "valid" in MASKED_AT_TEST[protocol] else [])
    kwargs.setdefault("item_popularity", train.item_counts())
    return RankingEvaluator(target, exclude=exclude, **kwargs)  # type: ignore[arg-type]
