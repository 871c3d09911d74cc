"""Ranking metrics from a batch of top-k hit matrices: every function is vectorised over users.

`hits` is a (n_users, K) float tensor: 1 where the item ranked at that position is relevant.
`n_relevant` is each user's number of relevant items (>= 1). Each function returns one value per
user, so results can be averaged, or compared user by user in a paired test.
"""

from __future__ import annotations

import torch


def _discounts(k: int) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))


def recall(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1) / n_relevant


def precision(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1) / k


def f1(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Per user, the harmonic mean of that user's precision@k and recall@k, 2PR / (P + R) (0 without
    a hit), which equals 2 hits / (k + n_relevant); averaged over users like every metric here, so it
    is not the harmonic mean of mean precision and mean recall."""
    return 2 * hits[:, :k].sum(1) / (k + n_relevant)


def hit_rate(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return (hits[:, :k].sum(1) > 0).to(hits.dtype)


def ndcg(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Binary-relevance NDCG; the ideal list puts min(n_relevant, k) relevant items first."""
    disc = _discounts(k).to(hits.dtype)
    dcg = (hits[:, :k] * disc).sum(1)
    ideal_cum = torch.cumsum(disc, 0)
    n_ideal = torch.clamp(n_relevant, max=k).long() - 1
    return dcg / ideal_cum[n_ideal]


def mrr(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Reciprocal rank of the first relevant item within the top k, 0 if none."""
    h = hits[:, :k]
    first = torch.argmax(h, dim=1)
    found = h.gather(1, first[:, None]).squeeze(1) > 0
    return torch.where(found, 1.0 / (first + 1).to(hits.dtype), torch.zeros_like(first, dtype=hits.dtype))


def average_precision(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """AP@k = sum_i P@i * rel_i / min(n_relevant, k) (RecBole's and Cornac's convention)."""
    h = hits[:, :k]
    ranks = torch.arange(1, k + 1, dtype=hits.dtype)
    prec_at_i = torch.cumsum(h, 1) / ranks
    return (prec_at_i * h).sum(1) / torch.clamp(n_relevant, max=k)


PER_USER = {
    "recall": recall,
    "ndcg": ndcg,
    "precision": precision,
    "f1": f1,
    "map": average_precision,
    "hit": hit_rate,
    "mrr": mrr,
}


def coverage(top_items: torch.Tensor, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top k."""
    return torch.unique(top_items[:, :k]).numel() / n_items


def novelty(top_items: torch.Tensor, item_popularity: torch.Tensor, n_users: int, k: int) -> torch.Tensor:
    """Mean self-information -log2 p(i) of recommended items, p(i) = (train users of i + 1) / (users + 1).

    The +1 smoothing keeps items never seen in training finite (they are the most novel)."""
    p = (item_popularity.to(torch.float64) + 1.0) / (n_users + 1.0)
    info = -torch.log2(p)
    return info[top_items[:, :k]].mean(1)


def intra_list_diversity(top_items: torch.Tensor, item_vectors: torch.Tensor, k: int) -> torch.Tensor:
    """Mean pairwise cosine distance within each top-k list, computed without a k x k loop:
    sum_{a != b} cos(a, b) = ||sum v||^2 - sum ||v||^2 for unit vectors v."""
    if k < 2:
        return torch.zeros(top_items.shape[0], dtype=torch.float64)
    v = torch.nn.functional.normalize(item_vectors.to(torch.float64), dim=1)[top_items[:, :k]]
    total = v.sum(1).pow(2).sum(1)
    self_sim = v.pow(2).sum((1, 2))
    mean_cos = (total - self_sim) / (k * (k - 1))
    return 1.0 - mean_cos
