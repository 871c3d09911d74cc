"""The run summary, typed: report.md, the CLI table, the run bundle and bench/summarize_runs.py read
its fields instead of string keys, so a renamed or missing key fails where it is built, not where it
is printed.

`RunSummary.to_dict()` is the layout of a run's metrics.json, and `from_dict()` / `load()` read any
metrics.json back, older runs' too: a key an older crossrec did not write takes the value that run
implied (eval_protocol crossrec, selection on the monitor over all items, no cold items, nothing
tuned, the tuning sampler not recorded).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crossrec.errors import CrossrecError
from crossrec.eval.stats import PairedTest


def _known(cls: type, d: dict[str, Any], **nested: Any) -> dict[str, Any]:
    """The keys of `d` that are fields of `cls`, with `nested` (already converted) on top; absent
    keys are left to the field defaults, which say what older files implied."""
    names = {f.name for f in fields(cls)}
    return {**{k: v for k, v in d.items() if k in names}, **nested}


@dataclass(frozen=True)
class Stat:
    """One metric over seeds: mean, sample standard deviation (0 for a single seed), seeds counted."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stat:
        return cls(d["mean"], d["std"], d["n"])


def stats(table: dict[str, dict[str, Any]]) -> dict[str, Stat]:
    """`{metric: {"mean", "std", "n"}}`, as eval.stats.mean_std returns it and metrics.json holds it."""
    return {name: Stat.from_dict(d) for name, d in table.items()}


def _stat_dicts(table: dict[str, Stat]) -> dict[str, dict[str, float]]:
    return {name: stat.to_dict() for name, stat in table.items()}


@dataclass(frozen=True)
class SeedRun:
    """One (model, seed) fit: its validation and test metrics, fit time and per-epoch history."""

    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    epochs: int
    history: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedRun:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Trial:
    """One tuning trial: the sampled parameters, their validation score and the trial's cost."""

    number: int
    params: dict[str, Any]
    value: float
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ModelTuning:
    """What one model's search chose on validation, which sampler ran, and every trial it made."""

    best_params: dict[str, Any]
    best_value: float
    sampler: str | None = None  # None: runs before the sampler was recorded
    trials: list[Trial]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"best_params": self.best_params, "best_value": self.best_value}
        if self.sampler is not None:
            out["sampler"] = self.sampler
        return {**out, "trials": [asdict(t) for t in self.trials]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelTuning:
        return cls(**_known(cls, d, trials=[Trial(**t) for t in d["trials"]]))


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    """One model entry of the run: its settings and search, metrics mean ± std over seeds, each seed."""

    label: str
    model: str
    params: dict[str, Any]
    baseline: bool = False
    tuning: ModelTuning | None = None
    valid: dict[str, Stat]
    test: dict[str, Stat]
    fit_seconds: Stat
    runs: list[SeedRun]

    def to_dict(self) -> dict[str, Any]:
        """The entry under `models[label]` (the label is its key, not a field)."""
        return {
            "model": self.model,
            "params": self.params,
            "baseline": self.baseline,
            "tuning": self.tuning.to_dict() if self.tuning else None,
            "valid": _stat_dicts(self.valid),
            "test": _stat_dicts(self.test),
            "fit_seconds": self.fit_seconds.to_dict(),
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, label: str, d: dict[str, Any]) -> ModelSummary:
        return cls(
            **_known(
                cls,
                d,
                label=label,
                tuning=ModelTuning.from_dict(d["tuning"]) if d.get("tuning") else None,
                valid=stats(d["valid"]),
                test=stats(d["test"]),
                fit_seconds=Stat.from_dict(d["fit_seconds"]),
                runs=[SeedRun.from_dict(r) for r in d["runs"]],
            )
        )


@dataclass(frozen=True)
class TuningProtocol:
    """How the run tuned: sampler(s) that ran, budget, sampler seed, the seed each trial trained with."""

    sampler: str
    trials_per_model: int
    seed: int
    timeout_s: float | None
    trial_seed: int
    models: list[str]


@dataclass(frozen=True, kw_only=True)
class ProtocolSummary:
    """The evaluation protocol of the run, as report.md states it in words."""

    ranking: str = "full ranking over all items"
    masked_at_validation: list[str] = field(default_factory=lambda: ["train"])
    eval_protocol: str = "crossrec"
    masked_at_test: list[str] = field(default_factory=lambda: ["train", "valid"])
    users_evaluated_at_test: int
    ks: list[int]
    monitor: str
    valid_on: str = "all"
    selection_metric: str  # older files: the monitor (see from_dict)
    selection: str = "best validation mean of the monitor metric"
    seeds: list[int]
    warm_cold: bool = False
    tuning: TuningProtocol | None = None
    compared_with: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranking": self.ranking,
            "masked_at_validation": self.masked_at_validation,
            "eval_protocol": self.eval_protocol,
            "masked_at_test": self.masked_at_test,
            "users_evaluated_at_test": self.users_evaluated_at_test,
            "ks": self.ks,
            "monitor": self.monitor,
            "valid_on": self.valid_on,
            "selection_metric": self.selection_metric,
            "selection": self.selection,
            "seeds": self.seeds,
            "warm_cold": self.warm_cold,
            "tuning": asdict(self.tuning) if self.tuning else None,
            "compared_with": self.compared_with,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProtocolSummary:
        return cls(
            **_known(
                cls,
                d,
                selection_metric=d.get("selection_metric", d["monitor"]),
                tuning=TuningProtocol(**d["tuning"]) if d.get("tuning") else None,
            )
        )


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """A finished run: data, split, protocol, every model, the ranking by validation and the paired test
    of the best model. `dataset` and `split` are those objects' own `summary()` dicts."""

    name: str
    dataset: dict[str, Any]
    split: dict[str, Any]
    protocol: ProtocolSummary
    models: dict[str, ModelSummary]
    ranking_by_validation: list[str]
    significance: PairedTest | None = None
    significance_sentence: str | None = None
    ingest: str | None = None  # the ingest report's summary when the run encoded item content
    plots: list[str] | None = None  # PNG file names in the run folder; None: plots were off

    def to_dict(self) -> dict[str, Any]:
        """The metrics.json layout (`plots` only when plots were drawn, as before)."""
        out = {
            "name": self.name,
            "dataset": self.dataset,
            "split": self.split,
            "protocol": self.protocol.to_dict(),
            "models": {label: m.to_dict() for label, m in self.models.items()},
            "ranking_by_validation": self.ranking_by_validation,
            "significance": self.significance.to_dict() if self.significance else None,
            "significance_sentence": self.significance_sentence,
            "ingest": self.ingest,
        }
        return out if self.plots is None else {**out, "plots": self.plots}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSummary:
        sig = d.get("significance")
        return cls(
            **_known(
                cls,
                d,
                protocol=ProtocolSummary.from_dict(d["protocol"]),
                models={label: ModelSummary.from_dict(label, m) for label, m in d["models"].items()},
                significance=PairedTest(**_known(PairedTest, sig)) if sig else None,
            )
        )

    @classmethod
    def load(cls, path: str | Path) -> RunSummary:
        """A run's metrics.json, of this crossrec or an older one."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except KeyError as exc:
            raise CrossrecError(f"{path} is not a crossrec run summary: it lacks the key {exc}") from None
        except (TypeError, json.JSONDecodeError) as exc:
            raise CrossrecError(f"{path} is not a crossrec run summary: {exc}") from None
