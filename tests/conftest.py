"""Shared fixtures: where the real data sets live (../shared/data beside the repository)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

# Spinning OpenMP workers slow torch several-fold whenever another process shares the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def in_ci() -> bool:
    """Whether the CI environment variable is set (CI=1, CI=true, ...; unset, empty, 0 or false: not CI)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> NoReturn:
    """A test input is absent: skip on a developer's machine, fail under CI, where a skip would hide it."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a missing test input fails instead of skipping]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def missing_input() -> Callable[[str], NoReturn]:
    """Call with the reason when a test input is absent (see `_missing`)."""
    return _missing


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        _missing(f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _model_artifacts_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory):
    """Exported encoder graphs go to a per-session folder, not the user's ~/.cache."""
    previous = os.environ.get("CROSSREC_MODEL_CACHE")
    os.environ["CROSSREC_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    if previous is None:
        os.environ.pop("CROSSREC_MODEL_CACHE")
    else:
        os.environ["CROSSREC_MODEL_CACHE"] = previous


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a Ray cluster run last: Ray leaves threads in this process after
    `ray.shutdown()`, and CPython 3.11 fails ("AST constructor recursion depth mismatch") when one
    of them builds an AST while a later test imports a module that pytest rewrites."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)
