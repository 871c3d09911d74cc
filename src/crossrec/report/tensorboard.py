"""Training curves to TensorBoard, when a run asks for it (needs the `tensorboard` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from crossrec.errors import ConfigError


def write_tensorboard(histories: Mapping[str, Sequence[Mapping[str, float]]], logdir: Path) -> Path:
    """One TensorBoard run per model and seed, every numeric history field as a scalar series."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "report.tensorboard is on but the tensorboard package is missing: "
            "pip install 'crossrec[tensorboard]'"
        ) from None
    for name, history in histories.items():
        writer = SummaryWriter(log_dir=str(logdir / name))
        for row in history:
            step = int(row.get("epoch", 0))
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    writer.add_scalar(key, value, step)
        writer.close()
    return logdir
