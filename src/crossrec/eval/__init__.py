"""Evaluation stage: full-ranking metrics, seeds aggregation and significance tests."""

from crossrec.eval.ranking import MASKED_AT_TEST, RankingEvaluator, RankingResult, evaluator_for

__all__ = ["MASKED_AT_TEST", "RankingEvaluator", "RankingResult", "evaluator_for"]
