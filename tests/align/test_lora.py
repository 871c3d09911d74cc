"""LoRA fine-tuning of MiniLM: co-interaction pairs, a short real training run, the adapter it saves.

The adapter format itself (verification, merging) is tested in tests/encoders/test_adapter.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crossrec.align import lora
from crossrec.align.lora import ItemPairs, LoraTextTuner, co_interaction_pairs
from crossrec.data.schema import Interactions
from crossrec.encoders.registry import resolve
from crossrec.encoders.text import MiniLMEncoder
from crossrec.errors import ConfigError

# 4 users over 5 items; item 4 is never consumed. Co-counts: (0,1) 3, every other pair among 0-3 once.
TINY = Interactions(
    user=[0, 0, 0, 1, 1, 2, 2, 2, 3, 3],
    item=[0, 1, 2, 0, 1, 0, 1, 3, 2, 3],
    value=np.ones(10),
    n_users=4,
    n_items=5,
)


def _as_set(pairs: ItemPairs) -> dict[tuple[int, int], float]:
    return {(int(a), int(b)): round(float(s), 4) for a, b, s in zip(*pairs, strict=True)}


def test_pairs_follow_known_co_occurrence() -> None:
    # Cosines: (0,1) 3/3, (2,3) 1/2, the other four 1/sqrt(6); each item's best neighbour is kept.
    best = co_interaction_pairs(TINY, min_count=1, per_item=1, shrink=0.0)
    assert _as_set(best) == {(0, 1): 1.0, (2, 3): 0.5}
    assert list(best.left) == [0, 2]  # highest score first
    assert _as_set(co_interaction_pairs(TINY, min_count=2, per_item=5, shrink=0.0)) == {(0, 1): 1.0}
    everything = co_interaction_pairs(TINY, min_count=1, per_item=5, shrink=0.0)
    assert len(everything.left) == 6 and 4 not in everything.left and 4 not in everything.right
    assert (everything.left < everything.right).all()
    # The shrink lowers every score, the thinly supported ones the most; the order stays here.
    shrunk = _as_set(co_interaction_pairs(TINY, min_count=1, per_item=1, shrink=1.0))
    assert shrunk == {(0, 1): round(3 / 4, 4), (2, 3): round(1 / 3, 4)}


def test_pairs_sample_is_seeded_subset() -> None:
    everything = _as_set(co_interaction_pairs(TINY, min_count=1, per_item=5))
    sample = co_interaction_pairs(TINY, min_count=1, per_item=5, max_pairs=3, seed=7)
    assert len(sample.left) == 3 and _as_set(sample).items() <= everything.items()
    assert _as_set(sample) == _as_set(
        co_interaction_pairs(TINY, min_count=1, per_item=5, max_pairs=3, seed=7)
    )
    with pytest.raises(ConfigError):
        co_interaction_pairs(TINY, min_count=0)


def test_pairs_blockwise_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    inter = Interactions.from_matrix(sp.random(40, 30, density=0.25, random_state=1, format="csr"))
    whole = co_interaction_pairs(inter, min_count=2, per_item=3, max_pairs=10**6)
    monkeypatch.setattr(lora, "_BLOCK_CELLS", 30 * 4)  # 4 item rows per block: 8 blocks
    blocks = co_interaction_pairs(inter, min_count=2, per_item=3, max_pairs=10**6)
    assert len(whole.left) > 20 and _as_set(blocks) == _as_set(whole)
    r = inter.to_csr().toarray()
    co, n = r.T @ r, r.sum(0)
    for a, b, score in zip(*whole, strict=True):
        assert co[a, b] >= 2 and score == pytest.approx(co[a, b] / (np.sqrt(n[a] * n[b]) + 10.0), abs=1e-5)


TEXTS = [f"title: movie {i}. genres: {g}" for i, g in enumerate(["Comedy", "Drama", "Horror", "Sci-Fi"] * 16)]
PAIRS = ItemPairs(np.arange(32), np.arange(32, 64)[::-1].copy(), np.ones(32, dtype=np.float32))


@pytest.fixture(scope="module")
def trained() -> tuple[LoraTextTuner, dict[str, torch.Tensor]]:
    """32 arbitrary pairs learnt for 4 epochs: seconds on a CPU."""
    torch.manual_seed(0)
    tuner = LoraTextTuner(r=4, alpha=8, epochs=4, batch_size=16, lr=1e-2, max_length=32, dropout=0.0)
    frozen = {n: p.detach().clone() for n, p in tuner.network.named_parameters() if not p.requires_grad}
    tuner.fit(TEXTS, PAIRS)
    return tuner, frozen


@pytest.fixture(scope="module")
def adapter(
    trained: tuple[LoraTextTuner, dict[str, torch.Tensor]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return trained[0].save(tmp_path_factory.mktemp("lora") / "adapter")


def test_training_lowers_loss_and_only_trains_lora(
    trained: tuple[LoraTextTuner, dict[str, torch.Tensor]],
) -> None:
    tuner, frozen = trained
    losses = tuner.history["epoch_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1
    trainable = [n for n, p in tuner.network.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for name, param in tuner.network.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_adapter_reloads_into_the_tuned_vectors(
    trained: tuple[LoraTextTuner, dict[str, torch.Tensor]], adapter: Path
) -> None:
    tuner = trained[0]
    model = resolve("all-MiniLM-L6-v2")
    tuned = MiniLMEncoder(model, max_seq_length=32, adapter=adapter)
    plain = MiniLMEncoder(model, max_seq_length=32)
    reloaded = tuned.encode(TEXTS)
    np.testing.assert_allclose(reloaded, tuner.encode(TEXTS), atol=1e-5)
    assert np.abs(reloaded - plain.encode(TEXTS)).max() > 1e-2  # tuning moved the vectors
    # Pairs ended closer than under the frozen encoder.
    assert (reloaded[:32] * reloaded[32:][::-1]).sum(1).mean() > (
        plain.encode(TEXTS)[:32] * plain.encode(TEXTS)[32:][::-1]
    ).sum(1).mean()
    assert tuned.fingerprint != plain.fingerprint and "adapter" not in plain.settings
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "lora.json",
    ]
    assert sum(p.stat().st_size for p in adapter.iterdir()) < 2_000_000
    manifest = json.loads((adapter / "lora.json").read_text())
    assert manifest["params"] == tuner.params and manifest["pairs"] == 32
    assert manifest["epoch_loss"] == tuner.history["epoch_loss"]


def test_save_replaces_atomically(
    trained: tuple[LoraTextTuner, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    target = tmp_path / "adapter"
    (target / "stale").mkdir(parents=True)
    trained[0].save(target)
    trained[0].save(target)
    assert not (target / "stale").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temp or old folders left


def test_validation_stops_training_and_keeps_the_best_epoch() -> None:
    """The shared early-stopping rule: two epochs without a better score stop the tuner, and the
    adapter weights of the best epoch (2) come back, not those of the last one trained."""
    torch.manual_seed(0)
    tuner = LoraTextTuner(r=4, alpha=8, epochs=8, batch_size=16, lr=1e-2, max_length=32, dropout=0.0)
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def validate(epoch: int, trained: LoraTextTuner) -> float:
        seen[epoch] = {
            n: p.detach().clone() for n, p in trained.network.named_parameters() if p.requires_grad
        }
        return next(scores)

    tuner.fit(TEXTS, PAIRS, validate=validate, patience=2)
    assert tuner.best_epoch == 2 and sorted(seen) == [1, 2, 3, 4]
    assert len(tuner.history["epoch_loss"]) == 4 and tuner.history["valid"] == [0.1, 0.3, 0.2, 0.25]
    now = {n: p for n, p in tuner.network.named_parameters() if p.requires_grad}
    assert all(torch.equal(now[n], seen[2][n]) for n in now)
    assert not all(torch.equal(now[n], seen[4][n]) for n in now)
