from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrec.data.schema import Split
from crossrec.eval.ranking import evaluator_for
from crossrec.models import BPRMF, LightGCN, MostPop, Recommender
from crossrec.models.neural import NeuralRecommender, squared_norm_of_rows

FAST = {"embedding_dim": 32, "lr": 1e-2, "batch_size": 1024}


def _models(epochs: int = 30, **extra: object) -> list[NeuralRecommender]:
    params = {**FAST, "epochs": epochs, **extra}
    return [BPRMF(**params), LightGCN(n_layers=2, **params)]  # type: ignore[arg-type]


def test_lightgcn_beats_mostpop_under_early_stopping(tiktok_slice: Split) -> None:
    """MostPop is strong on this popularity-heavy slice (recall@20 .085): LightGCN with 3 layers at lr 5e-3
    (chosen on validation) beats it on test for each of seeds 0-3 (.091-.101). BPR-MF never does here
    (best .051 over lr, regularisation and losses); its MostPop test runs on MovieLens
    (tests/models/test_models_on_movielens.py). The restored epoch is the best validated one."""
    split = tiktok_slice
    model = LightGCN(**{**FAST, "lr": 5e-3}, n_layers=3, epochs=50, eval_every=2, patience=8)
    model.fit(split.train, valid=evaluator_for(split.valid, split.train))
    test = evaluator_for(split.test, split.train, split.valid)
    floor = test(MostPop().fit(split.train))["recall@20"]
    assert test(model)["recall@20"] > floor, (test(model), floor)
    assert model.best_epoch is not None
    assert model.history[model.best_epoch - 1]["recall@20"] == max(
        h["recall@20"] for h in model.history if "recall@20" in h
    )


@pytest.mark.parametrize("cls", [BPRMF, LightGCN])
def test_same_seed_same_scores(cls: type[NeuralRecommender], tiktok_slice: Split) -> None:
    users = np.arange(tiktok_slice.n_users)
    torch.set_num_threads(2)  # determinism must hold with threaded kernels too
    runs = [cls(**FAST, epochs=2, seed=5).fit(tiktok_slice.train).score(users) for _ in range(2)]
    torch.set_num_threads(1)
    assert torch.equal(runs[0], runs[1])
    other = cls(**FAST, epochs=2, seed=6).fit(tiktok_slice.train).score(users)
    assert not torch.equal(runs[0], other)


@pytest.mark.parametrize("model", [*_models(epochs=3), MostPop()], ids=["bpr", "lightgcn", "mostpop"])
def test_save_load_round_trip(model: Recommender, tiktok_slice: Split, tmp_path: Path) -> None:
    model.fit(tiktok_slice.train)
    loaded = Recommender.load(model.save(tmp_path / "model.pt"))
    users = np.arange(tiktok_slice.n_users)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert torch.equal(loaded.score(users), model.score(users))


class _Scripted:
    """A validator replaying fixed metric values and remembering the embeddings it saw."""

    monitor = "recall@20"

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.seen: list[np.ndarray] = []

    def __call__(self, model: Recommender) -> dict[str, float]:
        self.seen.append(model.user_vectors().copy())
        return {"recall@20": self.values[len(self.seen) - 1]}


def test_early_stopping_restores_the_best_epoch(tiktok_slice: Split) -> None:
    valid = _Scripted([0.1, 0.3, 0.2, 0.25, 0.29, 0.9])
    model = LightGCN(**FAST, epochs=50, eval_every=2, patience=3).fit(tiktok_slice.train, valid=valid)
    # Evaluations at epochs 2, 4, 6, 8, 10: best at epoch 4, then three evaluations without gain.
    assert [h["epoch"] for h in model.history] == list(range(1, 11))
    assert [h["epoch"] for h in model.history if "recall@20" in h] == [2, 4, 6, 8, 10]
    assert model.best_epoch == 4
    np.testing.assert_array_equal(model.user_vectors(), valid.seen[1])
    assert not np.array_equal(valid.seen[1], valid.seen[-1])
    assert {"epoch", "loss", "seconds", "eval_seconds", "recall@20"} <= set(model.history[3])


def test_without_validator_trains_all_epochs_and_keeps_the_last(tiktok_slice: Split) -> None:
    model = BPRMF(**FAST, epochs=4).fit(tiktok_slice.train)
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4]
    assert model.best_epoch is None
    assert all(np.isfinite(h["loss"]) and h["seconds"] > 0 for h in model.history)


def test_steps_per_epoch_sets_the_batch_from_the_data(tiktok_slice: Split, monkeypatch) -> None:
    """With steps_per_epoch every epoch is that many steps over all pairs, whatever batch_size says."""
    sizes: list[int] = []
    original = LightGCN.batch_loss

    def counted(self, users, pos, neg, values):  # type: ignore[no-untyped-def]
        sizes.append(len(users))
        return original(self, users, pos, neg, values)

    monkeypatch.setattr(LightGCN, "batch_loss", counted)
    LightGCN(**{**FAST, "batch_size": 7}, steps_per_epoch=3, epochs=2).fit(tiktok_slice.train)
    pairs = tiktok_slice.train.to_csr(binary=True).nnz
    assert len(sizes) == 6 and sum(sizes) == 2 * pairs and max(sizes) == -(-pairs // 3)
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        LightGCN(steps_per_epoch=0)


def test_lightgcn_cache_follows_parameter_updates(tiktok_slice: Split) -> None:
    model = LightGCN(**FAST, epochs=1).fit(tiktok_slice.train)
    users = np.arange(5)
    before = model.score(users)
    assert model._embeddings()[0] is model._embeddings()[0]  # cached between updates
    with torch.no_grad():
        model.net.user.mul_(2.0)
        model.net.item.mul_(2.0)
    # Propagation is linear, so fresh scores are 4x the old ones; stale ones would be equal.
    torch.testing.assert_close(model.score(users), 4 * before)


@pytest.mark.parametrize("n_rows", [5, 400], ids=["gathered", "counted"])
def test_squared_norm_of_rows_counts_repeats(n_rows: int) -> None:
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 50, (n_rows // 5, 5), generator=gen)
    got = squared_norm_of_rows(table, rows)
    (grad,) = torch.autograd.grad(got, table)
    want = table[rows.reshape(-1)].pow(2).sum()
    (want_grad,) = torch.autograd.grad(want, table)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, want_grad)
