from __future__ import annotations

import pytest

from crossrec.errors import ConfigError
from crossrec.models import BPRMF, MODELS, ItemKNN, LightGCN, MostPop, build_model


def test_every_registered_model_builds_with_defaults() -> None:
    expected = {"mostpop": MostPop, "itemknn": ItemKNN, "bpr": BPRMF, "lightgcn": LightGCN}
    assert expected.items() <= MODELS.items()
    for name, cls in MODELS.items():
        assert type(build_model(name)) is cls


def test_params_reach_the_model() -> None:
    model = build_model("lightgcn", n_layers=2, reg_weight=1e-3)
    assert model.get_params()["n_layers"] == 2 and model.get_params()["reg_weight"] == 1e-3


def test_unknown_name_lists_the_registry() -> None:
    expected = r"unknown model 'ngcf'; choose one of mostpop, itemknn, bpr, lightgcn"
    with pytest.raises(ConfigError, match=expected):
        build_model("ngcf")


def test_unknown_param_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"no parameter.*layers.*valid: .*n_layers"):
        build_model("lightgcn", layers=3)
    with pytest.raises(ConfigError, match=r"valid: \(none\)"):
        build_model("mostpop", k=3)


def test_bad_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"itemknn.*k must be"):
        build_model("itemknn", k=0)
