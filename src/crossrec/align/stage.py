"""The align stage of a run: train shared-space heads on the run's own catalogue and hand the aligned
vectors to the models as item features.

Configured by the run's `align` section: which modality pairs to align, which features make up a
modality's head input (say a poster's embedding and its ImageNet label probabilities), and the head
shapes to try. Each candidate is trained on the catalogue's content pairs with a held-out share of
items; the one with the best held-out paired recall@10 is kept (no interaction data is read, so the
run's validation and test splits play no part). Every modality with a head (and the anchor, if any)
then gets `<modality><suffix>` features in the shared space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crossrec.align.heads import SharedSpace
from crossrec.data.features import ItemFeatures
from crossrec.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeadsCandidate(_Strict):
    """One head shape to try: `anchor` keeps that modality's own space (no head)."""

    anchor: str | None = None
    hidden: int = Field(512, ge=0)
    dim: int = Field(256, ge=1)


class AlignConfig(_Strict):
    pairs: list[tuple[str, str]] = Field(min_length=1)  # e.g. [[image, text]]
    inputs: dict[str, list[str]] = Field(default_factory=dict)  # modality -> features concatenated
    candidates: list[HeadsCandidate] = Field(
        default_factory=lambda: [HeadsCandidate(anchor=None)], min_length=1
    )
    epochs: int = Field(300, ge=1)
    patience: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    temperature: float = Field(0.05, gt=0)
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    suffix: str = "_shared"


@dataclass
class AlignResult:
    space: SharedSpace
    features: dict[str, ItemFeatures]  # the new aligned features, by name
    candidates: list[dict[str, Any]]  # each candidate's held-out recall@10 and epochs
    chosen: int


def head_inputs(features: dict[str, ItemFeatures], config: AlignConfig) -> dict[str, ItemFeatures]:
    """Each aligned modality's head input: its own features, or those `inputs` names side by side."""
    modalities = list(dict.fromkeys(m for pair in config.pairs for m in pair))
    out = {}
    for m in modalities:
        names = config.inputs.get(m, [m])
        missing = [n for n in names if n not in features]
        if missing:
            known = ", ".join(sorted(features)) or "none"
            raise ConfigError(
                f"align: modality '{m}' needs item features {', '.join(missing)}; the run has: {known}"
            )
        parts = [features[n] for n in names]
        present = np.logical_and.reduce([p.present for p in parts])
        matrix = np.hstack([p.matrix for p in parts])
        out[m] = ItemFeatures(matrix, present, "+".join(p.source for p in parts))
    return out


def align_features(features: dict[str, ItemFeatures], config: AlignConfig) -> AlignResult:
    """Train every candidate, keep the best by held-out recall, embed every item that has the input."""
    inputs = head_inputs(features, config)
    fits, best = [], None
    for i, cand in enumerate(config.candidates):
        if cand.anchor is not None and cand.anchor not in inputs:
            raise ConfigError(f"align.candidates[{i}].anchor '{cand.anchor}' is not an aligned modality")
        space = SharedSpace(
            dim=cand.dim,
            hidden=cand.hidden,
            anchor=cand.anchor,
            temperature=config.temperature,
            lr=config.lr,
            epochs=config.epochs,
            patience=config.patience,
            valid_fraction=config.valid_fraction,
            seed=config.seed,
        )
        space.fit(inputs, pairs=config.pairs)
        score = max(row["valid_recall@10"] for row in space.history)
        fits.append({**cand.model_dump(), "valid_recall@10": score, "epochs": len(space.history)})
        if best is None or score > fits[best]["valid_recall@10"]:
            best, chosen_space = i, space
    assert best is not None
    aligned = {}
    for m, feats in inputs.items():
        vectors = np.zeros((feats.n_items, chosen_space.dim), dtype=np.float32)
        vectors[feats.present] = chosen_space.transform(m, feats.matrix[feats.present])
        aligned[m + config.suffix] = ItemFeatures(vectors, feats.present, f"shared-space:{m}")
    return AlignResult(chosen_space, aligned, fits, best)
