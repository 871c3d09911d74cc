"""Data-parallel training of an embedding model with Ray Train: `workers` processes (gloo on CPU)
each train on every `workers`-th batch and average gradients before each step (see
`training.train_model(shard=...)`), so one model comes back, trained on all the data.

Every worker holds the whole model and the whole training graph; what is divided is the batches'
forward and backward passes. That pays when a step's compute outweighs an all-reduce of the model's
parameters over the network, which on separate machines means large batches or a deep model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from crossrec.data.features import as_feature_set
from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.models.base import FeatureInput, Recommender, Validator
from crossrec.models.neural import NeuralRecommender
from crossrec.models.training import train_model


def fit_data_parallel(
    name: str,
    params: dict[str, Any],
    train: Interactions,
    item_features: FeatureInput | None = None,
    valid: Validator | None = None,
    *,
    workers: int = 2,
    seed: int = 0,
    storage: str | Path | None = None,
) -> Recommender:
    """The registry model `name` trained by `workers` Ray Train workers on the connected cluster;
    its `history` is rank 0's (every rank validates the same parameters)."""
    try:
        from ray.train import Checkpoint, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise ConfigError("Ray Train is not installed: pip install 'crossrec[ray]' (docs/scale.md)") from None
    from crossrec.models import MODELS, build_model

    if not issubclass(MODELS[name], NeuralRecommender):
        raise ConfigError(f"{name} is not trained by gradient steps: data-parallel training does not apply")

    def loop(_: dict[str, Any]) -> None:
        import ray.train
        import torch.distributed as dist

        model = build_model(name, seed=seed, **params)
        assert isinstance(model, NeuralRecommender)
        model._construct(train, as_feature_set(item_features))
        train_model(model, train, valid, shard=(dist.get_rank(), dist.get_world_size()))
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if dist.get_rank() == 0:
                (Path(folder) / "model.pt").write_bytes(model.to_bytes())
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report({"history": model.history}, checkpoint=checkpoint)

    storage = Path(storage or tempfile.mkdtemp(prefix="crossrec-train-"))
    trainer = TorchTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(storage_path=str(storage.resolve()), name=f"{name}-seed{seed}"),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"data-parallel training of {name} returned no model: {result.error}")
    with result.checkpoint.as_directory() as folder:
        model = Recommender.load((Path(folder) / "model.pt").read_bytes())
    model.history = list(result.metrics["history"])
    return model
