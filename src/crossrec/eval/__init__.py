"""Evaluation stage: full-ranking metrics, seeds aggregation and significance tests."""

from crossrec.eval.ranking import RankingEvaluator, RankingResult, evaluator_for

__all__ = ["RankingEvaluator", "RankingResult", "evaluator_for"]
