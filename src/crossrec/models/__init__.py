"""Model stage: the Recommender contract and the model zoo."""

from crossrec.models.base import EmbeddingRecommender, Recommender, Validator
from crossrec.models.mostpop import MostPop

__all__ = ["EmbeddingRecommender", "MostPop", "Recommender", "Validator"]
