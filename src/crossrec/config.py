"""One config system for every run.

Precedence, lowest to highest: the defaults below < the YAML file < `--set key.path=value`
overrides on the command line (or `overrides=` in Python). The resolved config is written with
every run, so a run can be repeated from its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossrec.align.stage import AlignConfig
from crossrec.encoders.modalities import EncodersConfig
from crossrec.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    format: Literal["movielens", "diffmm", "mmrec", "table"] = "movielens"
    path: str = "../shared/data/movielens-small"
    options: dict[str, Any] = Field(default_factory=dict)


class SplitConfig(_Strict):
    # auto: the split the dataset ships (MMRec, DiffMM), else temporal (data/splits.py make_split)
    method: Literal["auto", "shipped", "random", "temporal", "cold_item"] = "auto"
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    holdout: int | float = 1
    cold_fraction: float = 0.1


class EvalConfig(_Strict):
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    monitor: str = "recall@20"
    batch_size: int = 2048
    diversity_features: str | None = None
    # Which validation interactions select epochs, hyper-parameters and models: a cold-start model
    # is chosen on the cold items held out for validation (cold_item splits only).
    valid_on: Literal["all", "warm", "cold"] = "all"
    # What is masked when ranking the test split: crossrec masks training and validation items;
    # mmrec masks training items only, as MMRec does, for figures set beside MMRec's.
    protocol: Literal["crossrec", "mmrec"] = "crossrec"
    # Rank for a seeded random sample of at most this many users per evaluation (the same users for
    # every model): full ranking then grows with the catalogue only. None ranks every user.
    max_users: int | None = Field(default=None, ge=1)

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or min(ks) < 1:
            raise ValueError("ks must be a non-empty list of positive cut-offs")
        return sorted(set(ks))


class _RangeSpec(_Strict):
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        if self.log and low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {low}")
        return self


class FloatSpec(_RangeSpec):
    type: Literal["float"]
    low: float
    high: float


class IntSpec(_RangeSpec):
    type: Literal["int"]
    low: int
    high: int


class CategoricalSpec(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


ParamSpec = Annotated[FloatSpec | IntSpec | CategoricalSpec, Field(discriminator="type")]


class ModelConfig(_Strict):
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, ParamSpec] = Field(default_factory=dict)  # tuned on validation, see `tune`
    baseline: bool = False  # the significance test compares the best model with the best baseline

    @model_validator(mode="after")
    def _searchable(self) -> Self:
        """Name a typo in the search space at load time, not after minutes of training."""
        if not self.search:
            return self
        from crossrec.models import model_params

        try:
            known = model_params(self.name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        unknown = sorted(set(self.search) - set(known))
        if unknown:
            raise ValueError(
                f"model '{self.name}' has no parameter(s) {', '.join(unknown)} to search; "
                f"valid: {', '.join(known) or '(none)'}"
            )
        both = sorted(set(self.search) & set(self.params))
        if both:
            raise ValueError(f"{', '.join(both)} both fixed in params and searched: keep one")
        return self

    @property
    def display_name(self) -> str:
        return self.label or self.name


class TuneConfig(_Strict):
    """The Optuna search run for every model with a `search` space (validation split only)."""

    trials: int = Field(20, ge=1)  # the budget per model
    seed: int = 0
    timeout_s: float | None = Field(None, gt=0)  # per model; stops early, keeping finished trials


class ReportConfig(_Strict):
    plots: bool = True
    tensorboard: bool = False


class BundleConfig(_Strict):
    """The run bundle (run_dir/bundle): the trained models and what serving needs beside them."""

    write: bool = True
    all_seeds: bool = False  # also keep every seed's model, not only the one chosen by validation


class EncodeConfig(_Strict):
    """Which pretrained encoders turn item content into vectors (cached by content hash)."""

    cache_dir: str = ".cache/embeddings"
    max_items: int | None = Field(None, ge=1)  # only the N most-interacted items: a quick slice
    threads: int | None = None
    models: EncodersConfig = Field(default_factory=EncodersConfig)


class Config(_Strict):
    name: str = "experiment"
    output_dir: str = "runs"
    seeds: list[int] = Field(default_factory=lambda: [0])
    threads: int | None = None
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    encode: EncodeConfig | None = None
    align: AlignConfig | None = None  # shared-space heads trained on the run's catalogue (align/stage.py)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig(name="mostpop")])
    tune: TuneConfig = Field(default_factory=TuneConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    bundle: BundleConfig = Field(default_factory=BundleConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' must look like key.path=value")
    return key.split("."), yaml.safe_load(raw) if raw else None


def _apply(tree: dict[str, Any], keys: list[str], value: Any, item: str) -> None:
    node: Any = tree
    for key in keys[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, key, item)]
            continue
        node = node.setdefault(key, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"override '{item}': '{key}' is not a section")
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, item)] = value
    else:
        node[last] = value


def _list_index(node: list[Any], key: str, item: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ConfigError(f"override '{item}': '{key}' is not an index into a list of {len(node)}")
    return int(key)


def load_config(
    source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> Config:
    """Resolve a config from a YAML path or a dict, then apply `key.path=value` overrides."""
    if source is None:
        tree: dict[str, Any] = {}
    elif isinstance(source, dict):
        tree = yaml.safe_load(yaml.safe_dump(source))  # a deep copy the overrides may change
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    for item in overrides or []:
        keys, value = _parse_override(item)
        _apply(tree, keys, value, item)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        where = f" in {source}" if isinstance(source, str | Path) else ""
        raise ConfigError(f"invalid config{where}: {problems}") from None
