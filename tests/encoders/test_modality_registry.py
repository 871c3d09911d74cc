"""A new modality is one registration: config, inputs and encoder, then it flows to the models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from crossrec.config import load_config
from crossrec.data.schema import Dataset, Interactions, ItemContent
from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.build import encode_dataset
from crossrec.encoders.modalities import MODALITIES, Modality
from crossrec.encoders.registry import ModelFile, ModelSpec, ResolvedModel
from crossrec.errors import ConfigError
from crossrec.models import build_model


class FramesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bins: int = 8
    batch_size: int = 4


class ByteHistogram(Encoder):
    """A toy 'video frames' encoder: the histogram of a file's bytes (a stand-in for a real network)."""

    modality = "frames"

    def __init__(self, model: ResolvedModel, bins: int) -> None:
        super().__init__(model, {"bins": bins})
        self.bins = bins
        self.outputs = {MAIN_OUTPUT: bins}

    def load(self, raw: str) -> Loaded:
        data = Path(raw).read_bytes()
        if not data:
            raise BadInput("empty file")
        return Loaded(np.frombuffer(data, dtype=np.uint8))

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        hist = [np.histogram(b.data, bins=self.bins, range=(0, 256))[0] for b in batch]
        return {MAIN_OUTPUT: np.asarray(hist, dtype=np.float32)}


def _toy_model(tmp_path: Path) -> ResolvedModel:
    weights = tmp_path / "toy.bin"
    weights.write_bytes(b"toy")
    spec = ModelSpec("toy-frames", "none", "0", "none", {"weights": ModelFile("toy.bin", "0" * 64)}, "MIT")
    return ResolvedModel(spec, {"weights": weights}, "test")


@pytest.fixture
def frames_modality(tmp_path):
    model = _toy_model(tmp_path)
    MODALITIES.register(
        "frames",
        Modality(
            "frames",
            FramesConfig,
            lambda content, cfg: content.media.get("frames"),
            lambda cfg, **kw: ByteHistogram(model, cfg.bins),
        ),
        replace=True,
    )
    yield model
    MODALITIES.unregister("frames")


def test_a_registered_modality_is_configured_encoded_and_used_by_a_model(tmp_path, frames_modality):
    rng = np.random.default_rng(0)
    paths: list[str | None] = []
    for i in range(6):
        path = tmp_path / f"clip{i}.bin"
        # Items 0-2 are "dark" clips (low bytes), 3-5 "bright" ones: content that separates them.
        low, high = (0, 64) if i < 3 else (192, 256)
        path.write_bytes(rng.integers(low, high, 500, dtype=np.uint8).tobytes())
        paths.append(str(path))
    paths.append(None)  # item 6 has no clip
    (tmp_path / "empty.bin").write_bytes(b"")
    paths.append(str(tmp_path / "empty.bin"))  # item 7: a broken input, skipped and reported
    content = ItemContent(media={"frames": paths})
    inter = Interactions([0, 0, 1], [0, 1, 3], [1, 1, 1], 2, 8)
    dataset = Dataset("toy", np.array(["a", "b"]), np.array([f"i{i}" for i in range(8)]), inter, content)

    config = load_config(
        {"encode": {"models": {"text": None, "image": None, "audio": None, "frames": {"bins": 4}}}}
    )
    assert config.encode.models.modality_config("frames") == FramesConfig(bins=4)
    result = encode_dataset(dataset, config.encode.models, tmp_path / "cache", progress=False)
    features = result.features
    assert features["frames"].matrix.shape == (8, 4)
    assert features["frames"].present.tolist() == [True] * 6 + [False, False]
    assert [i.item for i in result.report.issues if i.action == "skipped"] == [7]

    model = build_model("contentknn", feature="frames").fit(inter, features)
    scores = model.score(np.array([0, 1])).numpy()
    assert scores[0, 2] > scores[0, 4]  # user a met dark clips: the unseen dark clip ranks above bright
    assert scores[1, 5] > scores[1, 2]


def test_an_unregistered_modality_is_named_at_load_time():
    with pytest.raises(
        ConfigError, match=r"no modality 'smell' is registered; registered: text, image, audio"
    ):
        load_config({"encode": {"models": {"smell": {}}}})
