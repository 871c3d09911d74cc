"""Run bundles: what serving needs from a run, without the source data.

A bundle folder holds the trained model of every model entry (the seed chosen by validation, and
optionally every seed), the user and item id maps, the item table (text fields, media paths), the
item feature matrices with their presence masks and encoder fingerprints, the shared-space heads when
the run trained them, the config and the split. `manifest.json` lists every file with its sha256
under a schema version; the folder is written beside its final place and renamed into it, and
`load_bundle` refuses a bundle whose schema, files or checksums do not match, naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossrec.align.heads import SharedSpace
from crossrec.config import Config, load_config
from crossrec.data.features import ItemFeatures
from crossrec.data.schema import Dataset, Split
from crossrec.encoders.registry import sha256_file
from crossrec.errors import CrossrecError
from crossrec.experiment.units import FitResult, file_slug
from crossrec.io import write_json_atomic
from crossrec.models.base import Recommender
from crossrec.models.neural import NeuralRecommender
from crossrec.report.summary import RunSummary

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(CrossrecError):
    """A bundle that cannot be trusted: wrong schema, a missing or changed file."""


def write_bundle(
    path: Path,
    config: Config,
    dataset: Dataset,
    split: Split,
    features: dict[str, ItemFeatures],
    runs: list[FitResult],
    summary: RunSummary,
    heads: Path | None = None,
) -> Path:
    """Write the bundle of a finished run to `path` (replacing an older one only once complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.savez(
            tmp / "ids.npz", user_ids=dataset.user_ids.astype(str), item_ids=dataset.item_ids.astype(str)
        )
        _write_items(tmp / "items.jsonl", dataset)
        (tmp / "features").mkdir()
        for name, feats in features.items():
            np.savez(
                tmp / "features" / f"{file_slug(name)}.npz",
                matrix=feats.matrix,
                present=feats.present,
                source=np.array(feats.source),
            )
        (tmp / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        split.save(tmp / "split.npz")
        if heads is not None:
            shutil.copyfile(heads, tmp / "heads.pt")
        models = _write_models(tmp / "models", config, runs, summary)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": config.name,
            "default_model": summary.ranking_by_validation[0],
            "models": models,
            "features": {
                n: {"file": f"features/{file_slug(n)}.npz", "source": f.source} for n, f in features.items()
            },
            "heads": "heads.pt" if heads is not None else None,
            "files": {f: sha256_file(tmp / f) for f in files},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_items(path: Path, dataset: Dataset) -> None:
    content = dataset.content
    with open(path, "w", encoding="utf-8") as fh:
        for i, item_id in enumerate(dataset.item_ids):
            row: dict[str, Any] = {"id": str(item_id)}
            row.update({name: values[i] for name, values in content.text.items()})
            row["image"] = content.image[i] if content.image is not None else None
            row["audio"] = content.audio[i] if content.audio is not None else None
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_models(folder: Path, config: Config, runs: list[FitResult], summary: RunSummary) -> dict[str, Any]:
    """Each entry's seed with the best validation selection metric (and every seed if asked)."""
    folder.mkdir()
    metric = summary.protocol.selection_metric
    out: dict[str, Any] = {}
    for model_cfg in config.models:
        label = model_cfg.display_name
        mine = [r for r in runs if r.label == label]
        best = max(mine, key=lambda r: r.valid.get(metric, -np.inf))
        file = f"models/{file_slug(label)}.pt"
        (folder.parent / file).write_bytes(best.model_bytes)
        seeds = {}
        if config.bundle.all_seeds:
            for r in mine:
                seeds[str(r.seed)] = f"models/{file_slug(label)}-seed{r.seed}.pt"
                (folder.parent / seeds[str(r.seed)]).write_bytes(r.model_bytes)
        out[label] = {
            "model": model_cfg.name,
            "file": file,
            "seed": best.seed,
            "valid": best.valid,
            "params": summary.models[label].params,
            "seeds": seeds,
        }
    return out


@dataclass
class Bundle:
    """A loaded run bundle: one model ready to recommend, and everything around it."""

    path: Path
    manifest: dict[str, Any]
    label: str
    model: Recommender
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: list[dict[str, Any]]
    features: dict[str, ItemFeatures]
    split: Split
    config: Config
    heads: SharedSpace | None = None  # the run's shared-space heads, when it trained them

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        seen = self.split.train.concat(self.split.valid).concat(self.split.test)
        self.seen = seen.to_csr(binary=True)

    def user_index(self, user_id: str | int) -> int:
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise KeyError(f"unknown user id {user_id!r}") from None

    def recommend(
        self, user_id: str | int, k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[str, float]]:
        """The top `k` (item id, score) for a known user; items the user already met are left out."""
        row = self.user_index(user_id)
        scores = self.model.score(np.array([row])).numpy()[0].astype(np.float64)
        if exclude_seen:
            scores[self.seen[row].indices] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [(str(self.item_ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]

    def history(self, user_id: str | int) -> sp.csr_matrix:
        """The user's training interactions as a (1, n_items) row (what fold-in starts from)."""
        return self.split.train.to_csr(binary=False)[self.user_index(user_id)]


def _verify(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a run bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: bundle schema version {version!r}; this crossrec reads {SCHEMA_VERSION}"
        )
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing")
        if sha256_file(file) != digest:
            raise BundleError(f"bundle file {file} was changed (sha256 differs from the manifest)")
    return manifest


def load_bundle(path: str | Path, model: str | None = None) -> Bundle:
    """A verified bundle with `model` (a label; default: the best by validation) ready to serve.
    A network model gets its network rebuilt around the saved weights (fold-in, content mapping)."""
    path = Path(path)
    manifest = _verify(path)
    label = model or manifest["default_model"]
    if label not in manifest["models"]:
        raise BundleError(f"bundle {path} has no model '{label}'; it has: {', '.join(manifest['models'])}")
    ids = np.load(path / "ids.npz", allow_pickle=False)
    features = {}
    for name, entry in manifest["features"].items():
        with np.load(path / entry["file"], allow_pickle=False) as z:
            features[name] = ItemFeatures(z["matrix"], z["present"], str(z["source"]))
    split = Split.load(path / "split.npz")
    config = load_config(path / "config.yaml")
    recommender = Recommender.load(path / manifest["models"][label]["file"])
    if isinstance(recommender, NeuralRecommender):
        recommender.restore(split.train, features)
    with open(path / "items.jsonl", encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh]
    heads = SharedSpace.load(path / manifest["heads"]) if manifest.get("heads") else None
    return Bundle(
        path,
        manifest,
        label,
        recommender,
        ids["user_ids"],
        ids["item_ids"],
        items,
        features,
        split,
        config,
        heads,
    )
