"""Real inputs for the encoder tests: a few posters and titles from movielens-small, Debian's sound theme,
and the real encoders, each loaded once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from crossrec.data.schema import Dataset, Interactions, ItemContent
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.registry import resolve
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder

SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")


@pytest.fixture(scope="session")
def posters(shared_data: Path) -> list[Path]:
    """16 real poster JPEGs."""
    return sorted((shared_data / "movielens-small" / "posters").glob("*.jpg"))[:16]


@pytest.fixture(scope="session")
def sounds(missing_input: Callable[[str], NoReturn]) -> list[Path]:
    """Real recordings (Ogg Vorbis) from Debian's sound-theme-freedesktop (skipped without them, except
    under CI, where they must be there)."""
    found = sorted(SOUNDS.glob("*.oga"))
    if len(found) < 4:
        missing_input(
            f"no recordings in {SOUNDS}: install them with `apt-get install sound-theme-freedesktop` "
            "(.ci/run does)"
        )
    return found


@pytest.fixture(scope="session")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder(resolve("all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def wordllama() -> WordLlamaEncoder:
    return WordLlamaEncoder(resolve("wordllama"))


@pytest.fixture(scope="session")
def effnet() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder(resolve("efficientnet-lite0"))


@pytest.fixture(scope="session")
def aisfx() -> AisfxEncoder:
    return AisfxEncoder(resolve("aisfx"))


def make_dataset(
    text: dict[str, list[str | None]] | None = None,
    image: list[str | None] | None = None,
    audio: list[str | None] | None = None,
) -> Dataset:
    """A one-user dataset over the given item content (encoders only read the content)."""
    columns = [*(text or {}).values(), image, audio]
    n = next(len(c) for c in columns if c is not None)
    content = ItemContent(text=text or {}, image=image, audio=audio)
    inter = Interactions([0], [0], [1.0], n_users=1, n_items=n)
    return Dataset("mini", np.array([1]), np.arange(100, 100 + n), inter, content)
