"""Training objectives shared by every embedding model, selected by name in a model's `loss` parameter.

Each takes the user vectors (B, d), the positive item vectors (B, d) and the sampled negatives:
(B, n, d) when every pair has its own, or (n, d) when the whole batch shares them (one matrix
product, so n can be in the hundreds). `mask` (B, n) marks the negatives that count: a shared
negative that is the row's own positive does not. MSE instead regresses the observed rating values,
so it needs no negatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from crossrec.registry import Registry


def negative_scores(u: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """(B, n) scores of each user against its own negatives (B, n, d) or the shared ones (n, d).
    Per-pair scores are a broadcast product: on CPU it beats einsum's batched (1 x d)(d x n) matmuls."""
    return u @ neg.T if neg.dim() == 2 else (u.unsqueeze(1) * neg).sum(-1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp(min=1)


def bpr_loss(
    u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pairwise ranking (Rendle et al. 2009): every negative should score below the positive."""
    s_pos = (u * pos).sum(-1, keepdim=True)
    return _masked_mean(-F.logsigmoid(s_pos - negative_scores(u, neg)), mask)


def bce_loss(
    u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pointwise click-through style: positives labelled 1, sampled negatives 0."""
    s_pos = (u * pos).sum(-1)
    return -F.logsigmoid(s_pos).mean() + _masked_mean(-F.logsigmoid(-negative_scores(u, neg)), mask)


def softmax_loss(
    u: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax (InfoNCE): the positive against all its negatives at once, which ranks far
    better than BPR per sampled negative when there are many of them."""
    s_pos = (u * pos).sum(-1, keepdim=True)
    s_neg = negative_scores(u, neg)
    if mask is not None:
        s_neg = s_neg.masked_fill(~mask, -math.inf)
    logits = torch.cat([s_pos, s_neg], dim=1) / temperature
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def mse_loss(u: torch.Tensor, item: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Explicit ratings: squared error of the dot product on observed (user, item, rating) only."""
    return F.mse_loss((u * item).sum(-1), values)


# Ranking losses by name, each called as loss(u, pos, neg, temperature, mask).
RANKING_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("ranking loss")
RANKING_LOSSES.register("bpr", lambda u, pos, neg, temperature, mask: bpr_loss(u, pos, neg, mask))
RANKING_LOSSES.register("bce", lambda u, pos, neg, temperature, mask: bce_loss(u, pos, neg, mask))
RANKING_LOSSES.register("softmax", softmax_loss)
# Every loss a model's `loss` parameter accepts: the ranking losses, and mse for explicit ratings.
LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("loss")
for _name, _loss in RANKING_LOSSES.items():
    LOSSES.register(_name, _loss)
LOSSES.register("mse", mse_loss)


def ranking_loss(
    name: str,
    u: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The implicit-feedback objective `name` (bpr, bce or softmax)."""
    return RANKING_LOSSES[name](u, pos, neg, temperature, mask)
