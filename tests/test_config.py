from __future__ import annotations

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
