"""Every shipped experiment loads, and every model in it builds (at each point of its search space)."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

import crossrec
from crossrec.config import load_config
from crossrec.models import build_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [*sorted((REPO / "configs").glob("*.yaml")), Path(crossrec.__file__).parent / "demo.yaml"]


def test_the_configs_are_found() -> None:
    assert len(SHIPPED) >= 8 and all(path.is_file() for path in SHIPPED)


def _corners(spec) -> list[object]:
    """The values of a search space worth building: every choice, or both ends of a range."""
    return list(spec.choices) if spec.type == "categorical" else [spec.low, spec.high]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_loads_and_its_models_build(path: Path, shared_data: Path) -> None:
    config = load_config(path)
    assert config.models, path
    for model in config.models:
        searched = {name: _corners(spec) for name, spec in model.search.items()}
        for values in product(*searched.values()):
            built = build_model(model.name, **model.params, **dict(zip(searched, values, strict=True)))
            assert {**model.params, **dict(zip(searched, values, strict=True))}.items() <= (
                built.get_params().items()
            ), model.display_name
    # Relative data paths are read from the repository root, where README says to run crossrec.
    assert (REPO / config.dataset.path).resolve().is_relative_to(shared_data.resolve()), config.dataset.path
    assert (REPO / config.dataset.path).exists(), config.dataset.path
