"""crossrec: multimodal recommendation driven by pretrained models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossrec.experiment.bundle import Bundle

__version__ = "0.1.0"


def load_bundle(path: str | Path, model: str | None = None) -> Bundle:
    """A verified run bundle, ready to recommend (crossrec.experiment.bundle.load_bundle). Imported
    lazily, so `import crossrec` stays light and torch loads only when a bundle does."""
    from crossrec.experiment.bundle import load_bundle as _load

    return _load(path, model)
