"""Modality fusion: any number of item modalities (text, image, audio, ...) into one representation.

The method is a model parameter, so a config switches it without code:
- `concat`: the modalities side by side, mixed by one learned linear map;
- `weighted`: a learned softmax-weighted sum, one weight per modality (readable after training);
- `gated`: attention per item, so an item with a telling poster but a bland plot leans on the poster;
  modalities an item lacks (its presence mask says so) get no attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from crossrec.data.features import as_feature_set
from crossrec.errors import ConfigError

if TYPE_CHECKING:
    from crossrec.models.base import FeatureInput

FUSIONS: tuple[str, ...] = ("concat", "weighted", "gated")


def check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion '{fusion}'; choose one of {', '.join(FUSIONS)}")


def select_features(
    item_features: FeatureInput, modalities: Sequence[str] | None, n_items: int | None, model: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The chosen features as L2-normalised float32 tensors (rows of absent content stay 0) and their
    presence, (n_items, M) bool in the same order.

    `modalities=None` takes every feature the run has; a model needing content fails here, naming
    what exists, rather than silently training on ids alone. `n_items=None` skips the row check
    (features of new items)."""
    features = as_feature_set(item_features)
    names = list(features) if modalities is None else list(modalities)
    missing = [m for m in names if m not in features]
    if missing or not names:
        known = ", ".join(sorted(features)) or "none (add an `encode` section or a dataset with features)"
        wanted = ", ".join(missing) if missing else "at least one modality"
        raise ConfigError(f"{model} needs item features {wanted}; the run has: {known}")
    tensors, present = {}, []
    for name in names:
        feats = features[name]
        if n_items is not None and feats.n_items != n_items:
            raise ConfigError(f"feature '{name}' has {feats.n_items} rows; {model} needs {n_items} rows")
        tensors[name] = F.normalize(torch.from_numpy(feats.matrix), dim=1)
        present.append(torch.from_numpy(feats.present))
    return tensors, torch.stack(present, dim=1)


class ModalityFusion(torch.nn.Module):
    """Fuses M item representations of one width `dim` into one of the same width."""

    def __init__(self, n_modalities: int, dim: int, method: str = "weighted") -> None:
        super().__init__()
        check_fusion(method)
        self.method = method
        if method == "concat":
            self.mix = torch.nn.Linear(n_modalities * dim, dim)
        elif method == "weighted":
            self.logits = torch.nn.Parameter(torch.zeros(n_modalities))
        else:
            self.key = torch.nn.Linear(dim, dim)
            self.query = torch.nn.Parameter(torch.randn(dim) / dim**0.5)

    def forward(self, parts: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """`present` (n, M) marks which modalities each row has; used by the gate only."""
        if self.method == "concat":
            return self.mix(torch.cat(list(parts), dim=1))
        stacked = torch.stack(list(parts), dim=1)  # (n, M, dim)
        return (self.weights(stacked, present).unsqueeze(-1) * stacked).sum(1)

    def weights(self, stacked: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """(n, M) weights of each modality per row (rows of a weighted sum are all the same)."""
        if self.method == "weighted":
            return torch.softmax(self.logits, 0).expand(stacked.shape[0], -1)
        if self.method != "gated":
            raise ValueError("concat fusion has no per-modality weights")
        scores = torch.tanh(self.key(stacked)) @ self.query
        if present is not None:
            # Rows with no modality at all keep uniform weights over zeros instead of NaN.
            scores = scores.masked_fill(~present & present.any(1, keepdim=True), -torch.inf)
        return torch.softmax(scores, dim=1)


class ModalityProjections(torch.nn.Module):
    """Each modality's frozen features (buffers: saved, never trained) and its own learned map to
    `dim` (linear, or a two-layer MLP when `hidden` is set, as in AlphaRec)."""

    def __init__(self, features: Mapping[str, torch.Tensor], dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.names = list(features)
        for i, name in enumerate(self.names):
            # Not persistent: a saved model keeps its weights; the features travel separately.
            self.register_buffer(f"feature_{i}", features[name], persistent=False)
        self.maps = torch.nn.ModuleList([_projection(features[n].shape[1], dim, hidden) for n in self.names])

    def inputs(self) -> list[torch.Tensor]:
        return [getattr(self, f"feature_{i}") for i in range(len(self.names))]

    def forward(
        self, inputs: Sequence[torch.Tensor] | None = None, rows: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each modality's projection of `inputs` (default: the item features), of `rows` only if given."""
        inputs = self.inputs() if inputs is None else inputs
        if rows is not None:
            inputs = [x.index_select(0, rows) for x in inputs]
        return [proj(x) for proj, x in zip(self.maps, inputs, strict=True)]


class ContentEncoder(torch.nn.Module):
    """Frozen pretrained features -> one learned `dim`-wide representation per row.

    `ModalityProjections` maps each modality, then `ModalityFusion` combines them."""

    def __init__(
        self,
        features: Mapping[str, torch.Tensor],
        dim: int,
        fusion: str = "weighted",
        hidden: int | None = None,
        present: torch.Tensor | None = None,
    ) -> None:
        """`present` (n, M) comes from the features' masks (`select_features`); without it, rows that
        are not all zero count as present."""
        super().__init__()
        self.names = list(features)
        if present is None:
            present = torch.stack([features[n].abs().sum(1) > 0 for n in self.names], 1)
        self.register_buffer("present", present, persistent=False)
        self.modalities = ModalityProjections(features, dim, hidden)
        self.fusion = ModalityFusion(len(self.names), dim, fusion)

    def project(self, inputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Each modality's projection of `inputs` (default: the item features)."""
        return self.modalities(inputs)

    def forward(
        self, inputs: Sequence[torch.Tensor] | None = None, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        if inputs is None:
            present = self.present
        return self.fusion(self.project(inputs), present)

    @torch.no_grad()
    def modality_weights(self) -> dict[str, float]:
        """Mean weight per modality over items: which modality the model leans on (not for concat)."""
        if self.fusion.method == "concat":
            return {}
        stacked = torch.stack(self.project(), dim=1)
        weights = self.fusion.weights(stacked, self.present).mean(0)
        return {name: float(w) for name, w in zip(self.names, weights, strict=True)}


def _projection(in_dim: int, dim: int, hidden: int | None) -> torch.nn.Module:
    if hidden is None:
        return torch.nn.Linear(in_dim, dim)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.LeakyReLU(), torch.nn.Linear(hidden, dim)
    )
