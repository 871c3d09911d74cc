"""Metrics checked on hand-computed cases and against torchmetrics' independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchmetrics.functional.retrieval as tmr

from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.eval import MASKED_AT_TEST, RankingEvaluator, evaluator_for
from crossrec.eval import metrics as M
from crossrec.models.base import Recommender


class FixedScores(Recommender):
    """A model that returns a given score matrix: lets tests control every ranking exactly."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.scores = scores

    def fit(self, train, item_features=None, valid=None):
        return self

    def score(self, users: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.scores[users], dtype=torch.float32)


def _hits(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed_user_with_two_hits_of_three_relevant():
    hits, n_rel = _hits([[1, 0, 1, 0, 0]]), torch.tensor([3.0], dtype=torch.float64)
    assert M.recall(hits, n_rel, 5).item() == pytest.approx(2 / 3)
    assert M.precision(hits, n_rel, 5).item() == pytest.approx(2 / 5)
    assert M.f1(hits, n_rel, 5).item() == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert M.hit_rate(hits, n_rel, 5).item() == 1.0
    assert M.mrr(hits, n_rel, 5).item() == 1.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg(hits, n_rel, 5).item() == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert M.average_precision(hits, n_rel, 5).item() == pytest.approx((1 + 2 / 3) / 3)
    # Truncated at 2: only the first hit counts, and the ideal list has two relevant items.
    assert M.recall(hits, n_rel, 2).item() == pytest.approx(1 / 3)
    assert M.ndcg(hits, n_rel, 2).item() == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert M.average_precision(hits, n_rel, 2).item() == pytest.approx(1 / 2)


def test_hand_computed_late_single_hit():
    hits, n_rel = _hits([[0, 0, 0, 1, 0]]), torch.tensor([1.0], dtype=torch.float64)
    assert M.mrr(hits, n_rel, 5).item() == pytest.approx(0.25)
    assert M.mrr(hits, n_rel, 3).item() == 0.0
    assert M.f1(hits, n_rel, 3).item() == 0.0  # no hit: precision and recall are both 0
    assert M.hit_rate(hits, n_rel, 3).item() == 0.0
    assert M.ndcg(hits, n_rel, 5).item() == pytest.approx(1 / math.log2(5))
    assert M.average_precision(hits, n_rel, 5).item() == pytest.approx(1 / 4)


def test_coverage_novelty_and_diversity_by_hand():
    top = torch.tensor([[0, 1], [0, 2]])
    assert M.coverage(top, n_items=4, k=2) == pytest.approx(3 / 4)
    popularity = torch.tensor([3.0, 1.0, 0.0, 0.0])
    nov = M.novelty(top, popularity, n_users=3, k=2)
    expected_user0 = (-math.log2(4 / 4) - math.log2(2 / 4)) / 2
    expected_user1 = (-math.log2(4 / 4) - math.log2(1 / 4)) / 2
    assert nov.tolist() == pytest.approx([expected_user0, expected_user1])
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [5.0, 5.0]])
    ild = M.intra_list_diversity(top, vectors, k=2)
    assert ild.tolist() == pytest.approx([1.0, 1 - 1 / math.sqrt(2)])


def test_diversity_matches_pairwise_loop():
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(30, 8, generator=gen)
    top = torch.stack([torch.randperm(30, generator=gen)[:6] for _ in range(10)])
    fast = M.intra_list_diversity(top, vectors, k=6)
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    slow = []
    for row in top:
        dists = [1 - float(unit[a] @ unit[b]) for i, a in enumerate(row) for b in row[i + 1 :]]
        slow.append(sum(dists) / len(dists))
    assert fast.tolist() == pytest.approx(slow)


def _random_problem(seed: int, n_users: int = 60, n_items: int = 40):
    rng = np.random.default_rng(seed)
    scores = rng.random((n_users, n_items)) + 0.1  # positive: torchmetrics ignores preds <= 0 in AP
    relevant = rng.random((n_users, n_items)) < 0.15
    relevant[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    train = (rng.random((n_users, n_items)) < 0.1) & ~relevant
    u, i = np.nonzero(relevant)
    target = Interactions(u, i, np.ones(len(u)), n_users, n_items)
    tu, ti = np.nonzero(train)
    train_inter = Interactions(tu, ti, np.ones(len(tu)), n_users, n_items)
    return scores, relevant, train, target, train_inter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_agrees_with_torchmetrics(seed: int):
    scores, relevant, train, target, train_inter = _random_problem(seed)
    n_items = scores.shape[1]
    ks = (1, 5, 10, n_items)
    evaluator = RankingEvaluator(target, exclude=[train_inter], ks=ks, batch_size=16)
    result = evaluator.evaluate(FixedScores(scores))
    reference = {
        "recall": tmr.retrieval_recall,
        "precision": tmr.retrieval_precision,
        "ndcg": tmr.retrieval_normalized_dcg,
        "hit": tmr.retrieval_hit_rate,
        "mrr": tmr.retrieval_reciprocal_rank,
    }
    for pos, user in enumerate(result.users):
        keep = ~train[user]  # masked training items are simply not candidates
        preds = torch.as_tensor(scores[user][keep])
        target_u = torch.as_tensor(relevant[user][keep])
        for k in ks:
            for name, fn in reference.items():
                expected = float(fn(preds, target_u, top_k=k))
                got = result.per_user[f"{name}@{k}"][pos]
                assert got == pytest.approx(expected, abs=1e-6), (name, k, user)
            # F1@k: each user's harmonic mean of torchmetrics' precision@k and recall@k.
            p = float(tmr.retrieval_precision(preds, target_u, top_k=k))
            r = float(tmr.retrieval_recall(preds, target_u, top_k=k))
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            assert result.per_user[f"f1@{k}"][pos] == pytest.approx(f1, abs=1e-6), (k, user)
        # Untruncated AP has one definition everywhere: compare at k = n_items.
        expected_ap = float(tmr.retrieval_average_precision(preds, target_u))
        assert result.per_user[f"map@{n_items}"][pos] == pytest.approx(expected_ap, abs=1e-6)
    assert result.metrics["recall@5"] == pytest.approx(result.per_user["recall@5"].mean())
    assert result.metrics["f1@5"] == pytest.approx(result.per_user["f1@5"].mean())  # a mean over users


def test_training_items_are_masked():
    # The model ranks each user's training item first; masking must push it out of the list.
    n_users, n_items = 4, 6
    scores = np.tile(np.arange(n_items, 0, -1, dtype=float), (n_users, 1))
    train = Interactions([0, 1, 2, 3], [0, 0, 0, 0], np.ones(4), n_users, n_items)
    test = Interactions([0, 1, 2, 3], [1, 1, 1, 1], np.ones(4), n_users, n_items)
    masked = RankingEvaluator(test, exclude=[train], ks=[1]).evaluate(FixedScores(scores))
    unmasked = RankingEvaluator(test, exclude=[], ks=[1]).evaluate(FixedScores(scores))
    assert masked.metrics["recall@1"] == 1.0
    assert unmasked.metrics["recall@1"] == 0.0


def test_mmrec_protocol_leaves_validation_items_rankable_at_test():
    # Scores rank item 0 (train), then item 1 (valid), then item 2 (test) for every user.
    n_users, n_items = 3, 5
    scores = np.tile(np.arange(n_items, 0, -1, dtype=float), (n_users, 1))
    train, valid, test = (Interactions([0, 1, 2], [i] * 3, np.ones(3), n_users, n_items) for i in range(3))
    crossrec = evaluator_for(test, train, valid, ks=[1]).evaluate(FixedScores(scores))
    mmrec = evaluator_for(test, train, valid, ks=[1, 2], protocol="mmrec").evaluate(FixedScores(scores))
    assert crossrec.metrics["recall@1"] == 1.0  # validation item masked: the test item comes first
    assert mmrec.metrics["recall@1"] == 0.0 and mmrec.metrics["recall@2"] == 1.0
    assert set(mmrec.top_items[:, 0].tolist()) == {1}  # the validation item takes the top place
    # Validation (no `valid` passed) masks training items under both protocols.
    for protocol in MASKED_AT_TEST:
        assert evaluator_for(valid, train, ks=[1], protocol=protocol)(FixedScores(scores))["recall@1"] == 1.0
    with pytest.raises(
        ConfigError, match="unknown evaluation protocol 'recbole'; choose one of crossrec, mmrec"
    ):
        evaluator_for(test, train, valid, protocol="recbole")


def test_only_users_with_targets_are_evaluated_and_candidates_restrict_ranking():
    n_users, n_items = 3, 5
    scores = np.tile(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), (n_users, 1))
    test = Interactions([0, 2, 2], [4, 4, 0], np.ones(3), n_users, n_items)
    evaluator = RankingEvaluator(test, ks=[1], candidate_items=np.array([3, 4]))
    result = evaluator.evaluate(FixedScores(scores))
    assert result.users.tolist() == [0, 2]  # user 2's item 0 is not a candidate, item 4 is kept
    assert result.metrics["recall@1"] == 0.0  # item 3 outranks item 4 among the candidates
    assert set(result.top_items[:, 0].tolist()) == {3}


def test_score_shape_is_checked():
    test = Interactions([0], [1], [1.0], 2, 3)
    with pytest.raises(ValueError, match="expected"):
        RankingEvaluator(test, ks=[1]).evaluate(FixedScores(np.zeros((2, 2))))


def test_the_scoring_batch_shrinks_with_the_catalogue_and_changes_no_metric(monkeypatch):
    from crossrec.eval import ranking

    assert ranking.scoring_batch(10_000) == 2048 and ranking.scoring_batch(1_000_000) == 67
    assert ranking.scoring_batch(10**9) == 1
    scores, _, _, target, train_inter = _random_problem(0)
    default = RankingEvaluator(target, exclude=[train_inter]).evaluate(FixedScores(scores))
    monkeypatch.setattr(ranking, "SCORE_BUDGET", 3 * scores.shape[1])  # 3 users per batch
    small = RankingEvaluator(target, exclude=[train_inter])
    assert small.batch_size == 3
    assert small.evaluate(FixedScores(scores)).metrics == default.metrics


def test_a_user_sample_is_seeded_shared_and_estimates_the_full_means():
    scores, _, _, target, train_inter = _random_problem(0, n_users=400, n_items=40)
    full = RankingEvaluator(target, exclude=[train_inter]).evaluate(FixedScores(scores))
    model = FixedScores(scores)
    results = [
        RankingEvaluator(target, exclude=[train_inter], max_users=100, sample_seed=s).evaluate(model)
        for s in (0, 0, 1)
    ]
    assert len(results[0].users) == 100 and np.all(np.diff(results[0].users) > 0)
    assert np.array_equal(results[0].users, results[1].users)  # same seed: every model gets these users
    assert not np.array_equal(results[0].users, results[2].users)
    # Each sampled user's values are exactly that user's in the full evaluation.
    pos = np.searchsorted(full.users, results[0].users)
    assert np.array_equal(results[0].per_user["recall@20"], full.per_user["recall@20"][pos])
    # The sample mean lies within 4 standard errors of the full mean (finite-population corrected).
    values = full.per_user["recall@20"]
    se = values.std(ddof=1) / math.sqrt(100) * math.sqrt(1 - 100 / len(values))
    assert abs(results[0].metrics["recall@20"] - values.mean()) < 4 * se
    larger = RankingEvaluator(target, exclude=[train_inter], max_users=10_000).evaluate(FixedScores(scores))
    assert larger.metrics == full.metrics  # a bound above the user count ranks every user
    with pytest.raises(ValueError, match="max_users must be >= 1"):
        RankingEvaluator(target, max_users=0)
