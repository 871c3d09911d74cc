"""Model stage: the Recommender contract, the model zoo and its registry."""

from __future__ import annotations

from typing import Any

from crossrec.errors import ConfigError
from crossrec.models.alpharec import AlphaRec
from crossrec.models.base import EmbeddingRecommender, Recommender, Validator
from crossrec.models.bm3 import BM3
from crossrec.models.bpr import BPRMF
from crossrec.models.content import ContentKNN
from crossrec.models.freedom import FREEDOM
from crossrec.models.itemknn import ItemKNN
from crossrec.models.lightgcn import LightGCN
from crossrec.models.mostpop import MostPop
from crossrec.models.neural import NeuralRecommender
from crossrec.models.profiled import ProfiledLightGCN
from crossrec.models.vbpr import VBPR
from crossrec.registry import Registry

MODELS: Registry[type[Recommender]] = Registry("model")
for _name, _cls in {
    "mostpop": MostPop,
    "itemknn": ItemKNN,
    "bpr": BPRMF,
    "lightgcn": LightGCN,
    "lightgcn-profile": ProfiledLightGCN,
    "contentknn": ContentKNN,
    "vbpr": VBPR,
    "freedom": FREEDOM,
    "bm3": BM3,
    "alpharec": AlphaRec,
}.items():
    MODELS.register(_name, _cls)


def model_params(name: str) -> dict[str, Any]:
    """The constructor parameters of a registered model and their defaults."""
    return MODELS[name].param_defaults()


def build_model(name: str, *, seed: int | None = None, **params: Any) -> Recommender:
    """A model by registry name; configuration mistakes fail here, naming what is valid. `seed`
    (a run's seed) goes to a model that takes one, unless `params` fix it."""
    valid = model_params(name)
    if seed is not None and "seed" in valid:
        params.setdefault("seed", seed)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"model '{name}' has no parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid) if valid else '(none)'}"
        )
    try:
        return MODELS[name](**params)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model '{name}': {exc}") from exc


__all__ = [
    "BM3",
    "BPRMF",
    "FREEDOM",
    "MODELS",
    "VBPR",
    "AlphaRec",
    "ContentKNN",
    "EmbeddingRecommender",
    "ItemKNN",
    "LightGCN",
    "MostPop",
    "NeuralRecommender",
    "ProfiledLightGCN",
    "Recommender",
    "Validator",
    "build_model",
    "model_params",
]
