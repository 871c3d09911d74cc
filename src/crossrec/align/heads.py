"""Projection heads that align frozen encoders in one shared space, trained contrastively on the
catalogue's own pairs (poster <-> its text, audio <-> its text).

No CLIP- or CLAP-like model installs offline, so crossrec learns the bridge itself: a head per
modality, a symmetric InfoNCE loss per pair of modalities, early stopping on held-out pairs. A
modality can be the `anchor`: its vectors are used as they are (no head), and the other heads learn
to land in its space, which needs fewer pairs than learning two heads at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn

from crossrec.align.retrieval import paired_recall
from crossrec.data.features import ItemFeatures, as_feature_set
from crossrec.io import atomic_path
from crossrec.training import EarlyStopping


def _head(in_dim: int, dim: int, hidden: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class SharedSpace:
    def __init__(
        self,
        dim: int = 256,
        hidden: int = 512,
        anchor: str | None = None,
        temperature: float = 0.05,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.2,
        batch_size: int = 256,
        epochs: int = 200,
        patience: int = 15,
        valid_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.anchor = anchor
        self.temperature = temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.heads = nn.ModuleDict()
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / temperature))))
        self.history: list[dict[str, float]] = []

    # -- features in, shared vectors out ----------------------------------------------------------
    def _standardise(self, name: str, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats[name]
        return (x - mean) / std

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.anchor:
            return nn.functional.normalize(x, dim=1)
        return nn.functional.normalize(self.heads[name](self._standardise(name, x)), dim=1)

    @torch.no_grad()
    def transform(self, name: str, x: np.ndarray) -> np.ndarray:
        """Unit vectors in the shared space for features `x` of modality `name`."""
        if name != self.anchor and name not in self.heads:
            raise KeyError(f"no head for modality '{name}'; trained: {', '.join(self.heads)}")
        self.heads.eval()
        return self._project(name, torch.as_tensor(np.asarray(x), dtype=torch.float32)).numpy()

    # -- training ---------------------------------------------------------------------------------
    def fit(
        self, features: Mapping[str, ItemFeatures | np.ndarray], pairs: Sequence[tuple[str, str]]
    ) -> Self:
        """`features[m]` has one row per item, with its presence mask (bare matrices: all-zero or NaN
        rows count as absent); each pair (a, b) trains on the items that have both."""
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        feature_set = as_feature_set(features)
        data = {m: torch.from_numpy(f.matrix) for m, f in feature_set.items()}
        present = {m: torch.from_numpy(f.present) for m, f in feature_set.items()}
        n = len(next(iter(data.values())))
        is_valid = torch.as_tensor(rng.random(n) < self.valid_fraction)
        dim = data[self.anchor].shape[1] if self.anchor else self.dim
        for m, x in data.items():
            rows = x[present[m] & ~is_valid]
            self._stats[m] = (rows.mean(0), rows.std(0).clamp_min(1e-6))
            if m != self.anchor:
                self.heads[m] = _head(x.shape[1], dim, self.hidden, self.dropout)
        self.dim = dim
        pair_rows = {
            (a, b): (
                torch.nonzero(present[a] & present[b] & ~is_valid).squeeze(1),
                torch.nonzero(present[a] & present[b] & is_valid).squeeze(1),
            )
            for a, b in pairs
        }
        params = [*self.heads.parameters(), self.log_scale]
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        stopping: EarlyStopping[dict[str, torch.Tensor]] = EarlyStopping(self.patience)
        for epoch in range(1, self.epochs + 1):
            self.heads.train()
            losses = []
            for (a, b), (train_rows, _) in pair_rows.items():
                order = train_rows[torch.randperm(len(train_rows))]
                for start in range(0, len(order) - 1, self.batch_size):
                    batch = order[start : start + self.batch_size]
                    if len(batch) < 2:
                        continue
                    za, zb = self._project(a, data[a][batch]), self._project(b, data[b][batch])
                    logits = self.log_scale.exp().clamp(max=100) * za @ zb.T
                    target = torch.arange(len(batch))
                    loss = (
                        nn.functional.cross_entropy(logits, target)
                        + nn.functional.cross_entropy(logits.T, target)
                    ) / 2
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(loss.item())
            score = self._validate(data, pair_rows)
            self.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "valid_recall@10": score})
            stopping.update(score, epoch, lambda: {k: v.clone() for k, v in self._state_dict().items()})
            if stopping.should_stop:
                break
        if stopping.best_state is not None:
            self._load_state_dict(stopping.best_state)
        self.heads.eval()
        return self

    @torch.no_grad()
    def _validate(self, data: dict[str, torch.Tensor], pair_rows: dict) -> float:
        self.heads.eval()
        scores = []
        for (a, b), (_, valid_rows) in pair_rows.items():
            if len(valid_rows) < 2:
                continue
            za = self._project(a, data[a][valid_rows]).numpy()
            zb = self._project(b, data[b][valid_rows]).numpy()
            scores.append(paired_recall(za, zb, ks=(10,))["recall@10"])
        return float(np.mean(scores)) if scores else 0.0

    # -- persistence ------------------------------------------------------------------------------
    def _state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"heads.{k}": v for k, v in self.heads.state_dict().items()}
        state["log_scale"] = self.log_scale.detach()
        for m, (mean, std) in self._stats.items():
            state[f"stats.{m}.mean"], state[f"stats.{m}.std"] = mean, std
        return state

    def _load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
        with torch.no_grad():
            self.log_scale.copy_(state["log_scale"])
        for key in state:
            if key.startswith("stats.") and key.endswith(".mean"):
                m = key[len("stats.") : -len(".mean")]
                self._stats[m] = (state[key], state[f"stats.{m}.std"])

    def save(self, path: str | Path) -> Path:
        dims = {m: int(self._stats[m][0].shape[0]) for m in self._stats}
        payload = {
            "params": {k: getattr(self, k) for k in ("dim", "hidden", "anchor", "temperature", "dropout")},
            "dims": dims,
            "state": self._state_dict(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SharedSpace:
        payload = torch.load(path, weights_only=True)
        space = cls(**payload["params"])
        for m, in_dim in payload["dims"].items():
            if m != space.anchor:
                space.heads[m] = _head(in_dim, space.dim, space.hidden, space.dropout)
        space._load_state_dict(payload["state"])
        space.heads.eval()
        return space
