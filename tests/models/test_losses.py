from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crossrec.models.losses import bce_loss, bpr_loss, mse_loss, ranking_loss, softmax_loss


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(6, 4, generator=gen),
        torch.randn(6, 4, generator=gen),
        torch.randn(6, 3, 4, generator=gen),
    )


def test_losses_match_their_definitions() -> None:
    u, p, n = _batch()
    s_pos, s_neg = (u * p).sum(1), torch.einsum("bd,bnd->bn", u, n)
    torch.testing.assert_close(bpr_loss(u, p, n), -F.logsigmoid(s_pos[:, None] - s_neg).mean())
    torch.testing.assert_close(bce_loss(u, p, n), -(F.logsigmoid(s_pos).mean() + F.logsigmoid(-s_neg).mean()))
    logits = torch.cat([s_pos[:, None], s_neg], 1) / 0.5
    target = torch.zeros(6, dtype=torch.long)
    torch.testing.assert_close(softmax_loss(u, p, n, 0.5), F.cross_entropy(logits, target))
    torch.testing.assert_close(mse_loss(u, p, torch.ones(6)), ((s_pos - 1) ** 2).mean())


@pytest.mark.parametrize("name", ["bpr", "bce", "softmax"])
def test_ranking_losses_fall_as_the_positive_pulls_ahead(name: str) -> None:
    u, p, n = _batch()
    assert ranking_loss(name, u, 3 * u, n) < ranking_loss(name, u, p, n) < ranking_loss(name, u, -3 * u, n)


def test_unknown_loss_is_refused() -> None:
    u, p, n = _batch()
    with pytest.raises(ValueError, match="bpr, bce, softmax"):
        ranking_loss("hinge", u, p, n)


@pytest.mark.parametrize("name", ["bpr", "bce", "softmax"])
def test_shared_negatives_equal_the_same_negatives_given_to_every_row(name: str) -> None:
    u, p, n = _batch()
    shared = n[0]
    expanded = shared.expand(len(u), *shared.shape)
    torch.testing.assert_close(ranking_loss(name, u, p, shared, 0.5), ranking_loss(name, u, p, expanded, 0.5))


@pytest.mark.parametrize("name", ["bpr", "bce", "softmax"])
def test_masked_negatives_do_not_count(name: str) -> None:
    u, p, n = _batch()
    shared = n[0]
    mask = torch.ones(len(u), 3, dtype=torch.bool)
    mask[:, 1] = False
    kept = shared[[0, 2]]
    masked = ranking_loss(name, u, p, shared, 0.5, mask)
    torch.testing.assert_close(masked, ranking_loss(name, u, p, kept, 0.5))
