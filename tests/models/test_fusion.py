from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrec.errors import ConfigError
from crossrec.models.fusion import ContentEncoder, ModalityFusion, select_features


def _features(n: int = 20) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    raw = {
        "text": rng.normal(size=(n, 12)),
        "image": rng.normal(size=(n, 30)),
        "audio": rng.normal(size=(n, 5)),
    }
    raw["image"][3] = 0.0  # item 3 has no poster
    return select_features(raw, None, n, "test")[0]


@pytest.mark.parametrize("method", ["concat", "weighted", "gated"])
def test_any_number_of_modalities_fuse_to_one_width(method: str) -> None:
    torch.manual_seed(0)
    enc = ContentEncoder(_features(), dim=8, fusion=method)
    out = enc()
    assert out.shape == (20, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_weighted_fusion_weights_are_a_distribution_the_model_can_move() -> None:
    fusion = ModalityFusion(3, 4, "weighted")
    parts = [torch.full((2, 4), float(v)) for v in (1, 2, 3)]
    torch.testing.assert_close(fusion(parts), torch.full((2, 4), 2.0))  # equal weights at start
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.0, 0.0, 10.0]))
    assert torch.allclose(fusion(parts), torch.full((2, 4), 3.0), atol=1e-3)


def test_gate_gives_no_weight_to_a_missing_modality() -> None:
    torch.manual_seed(0)
    enc = ContentEncoder(_features(), dim=8, fusion="gated")
    stacked = torch.stack(enc.project(), dim=1)
    weights = enc.fusion.weights(stacked, enc.present)
    assert weights[3, enc.names.index("image")] == 0
    torch.testing.assert_close(weights.sum(1), torch.ones(20))
    assert set(enc.modality_weights()) == {"text", "image", "audio"}


def test_select_features_names_what_exists() -> None:
    with pytest.raises(ConfigError, match="needs item features audio; the run has: image, text"):
        select_features({"text": np.ones((3, 2)), "image": np.ones((3, 2))}, ["audio"], 3, "X")
    with pytest.raises(ConfigError, match="4 rows"):
        select_features({"text": np.ones((3, 2))}, None, 4, "X")
    rows = select_features({"text": np.array([[3.0, 4.0], [0.0, 0.0]])}, None, 2, "X")[0]["text"]
    torch.testing.assert_close(rows, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
