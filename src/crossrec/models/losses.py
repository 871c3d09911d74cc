"""Training objectives shared by every embedding model, selected by name in a model's `loss` parameter.

Each takes the user vectors (B, d), the positive item vectors (B, d) and the sampled negatives
(B, n, d); MSE instead regresses the observed rating values, so it needs no negatives.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["bpr", "bce", "softmax", "mse"]
LOSSES: tuple[str, ...] = ("bpr", "bce", "softmax", "mse")


def bpr_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Pairwise ranking (Rendle et al. 2009): every negative should score below the positive."""
    s_pos = (u * pos).sum(-1, keepdim=True)
    s_neg = torch.einsum("bd,bnd->bn", u, neg)
    return -F.logsigmoid(s_pos - s_neg).mean()


def bce_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Pointwise click-through style: positives labelled 1, sampled negatives 0."""
    s_pos = (u * pos).sum(-1)
    s_neg = torch.einsum("bd,bnd->bn", u, neg)
    return -(F.logsigmoid(s_pos).mean() + F.logsigmoid(-s_neg).mean())


def softmax_loss(
    u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Sampled softmax (InfoNCE): the positive against all its negatives at once, which ranks far
    better than BPR per sampled negative when there are many of them."""
    s_pos = (u * pos).sum(-1, keepdim=True)
    s_neg = torch.einsum("bd,bnd->bn", u, neg)
    logits = torch.cat([s_pos, s_neg], dim=1) / temperature
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def mse_loss(u: torch.Tensor, item: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Explicit ratings: squared error of the dot product on observed (user, item, rating) only."""
    return F.mse_loss((u * item).sum(-1), values)


def ranking_loss(
    name: str, u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The implicit-feedback objective `name` (bpr, bce or softmax)."""
    if name == "bpr":
        return bpr_loss(u, pos, neg)
    if name == "bce":
        return bce_loss(u, pos, neg)
    if name == "softmax":
        return softmax_loss(u, pos, neg, temperature)
    raise ValueError(f"unknown ranking loss '{name}'; choose one of bpr, bce, softmax")
