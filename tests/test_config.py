from __future__ import annotations

import numpy as np
import pytest

from crossrec.config import Config, load_config
from crossrec.errors import ConfigError


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: from-file\nseeds: [1, 2]\nsplit: {method: random}\n"
        "models:\n  - name: lightgcn\n    params: {epochs: 5}\n"
    )
    cfg = load_config(path, ["split.method=temporal", "models.0.params.epochs=7", "eval.ks=[5, 50]"])
    assert cfg.name == "from-file"  # the file beats the default
    assert cfg.split.method == "temporal"  # the override beats the file
    assert cfg.models[0].params == {"epochs": 7}
    assert cfg.eval.ks == [5, 50]
    assert cfg.eval.monitor == Config().eval.monitor  # untouched defaults stay
    assert cfg.seeds == [1, 2]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config({"name": "x", "models": [{"name": "bpr", "params": {"lr": 0.01}}]})
    path = tmp_path / "resolved.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("source", "overrides", "message"),
    [
        ({"nmae": "typo"}, [], "nmae"),
        ({"split": {"method": "sideways"}}, [], "split.method"),
        ({}, ["eval.ks=[0]"], "eval.ks"),
        ({}, ["seeds"], "key.path=value"),
        ({"models": [{"name": "bpr"}]}, ["models.3.name=x"], "not an index"),
    ],
)
def test_bad_configs_name_the_field(source, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(source, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def _searched(search, params=None):
    return {"models": [{"name": "itemknn", "params": params or {}, "search": search}]}


def test_search_spaces_and_tune_section_load():
    cfg = load_config(
        _searched(
            {
                "k": {"type": "int", "low": 5, "high": 200, "log": True},
                "shrinkage": {"type": "categorical", "choices": [0.0, 10.0]},
            }
        ),
        ["tune.trials=4", "eval.valid_on=cold"],
    )
    assert cfg.models[0].search["k"].log and cfg.models[0].search["k"].high == 200
    assert cfg.models[0].search["shrinkage"].choices == [0.0, 10.0]
    assert (cfg.tune.trials, cfg.tune.seed, cfg.tune.timeout_s) == (4, 0, None)
    assert cfg.eval.valid_on == "cold"
    assert Config().seeds == [0] and Config().models[0].baseline is False
    assert load_config(cfg.model_dump(mode="json")) == cfg  # the resolved config round-trips


@pytest.mark.parametrize(
    ("search", "params", "message"),
    [
        ({"kk": {"type": "int", "low": 1, "high": 9}}, None, "no parameter.*kk.*valid: k, shrinkage"),
        ({"k": {"type": "int", "low": 9, "high": 9}}, None, r"low \(9\) must be below high"),
        ({"shrinkage": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, None, "low > 0"),
        ({"shrinkage": {"type": "categorical", "choices": []}}, None, "choices"),
        ({"k": {"type": "range", "low": 1, "high": 9}}, None, "models.0.search.k"),
        ({"k": {"type": "int", "low": 1}}, None, "high"),
        ({"k": {"type": "int", "low": 1, "high": 9}}, {"k": 3}, "both fixed in params and searched"),
    ],
)
def test_bad_search_spaces_are_named(search, params, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_searched(search, params))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["tune.trials=0"], "tune.trials"),
        (["eval.valid_on=new"], "eval.valid_on"),
        (["eval.protocol=recbole"], "eval.protocol"),
        (["eval.max_users=0"], "eval.max_users"),
    ],
)
def test_bad_tune_and_eval_settings(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config({}, overrides)


def test_eval_max_users_reaches_every_evaluator_of_the_protocol():
    from crossrec.data.schema import Interactions, Split
    from crossrec.experiment.protocol import build_protocol

    rng = np.random.default_rng(0)
    part = [Interactions(np.arange(50), rng.integers(0, 20, 50), np.ones(50), 50, 20) for _ in range(3)]
    split = Split(*part, name="toy")
    protocol = build_protocol(load_config({}, ["eval.max_users=7"]), split, {})
    assert [len(e.users) for e in (*protocol.valid.values(), *protocol.test.values())] == [7, 7]
    assert len(build_protocol(load_config({}, []), split, {}).test[""].users) == 50
