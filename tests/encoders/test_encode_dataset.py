"""encode_dataset end to end on a small real slice: broken inputs reported, cache reuse, kill -9 resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_dataset
from PIL import Image

from crossrec.encoders import EncodersConfig, encode_dataset
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.text import MiniLMEncoder
from crossrec.errors import ConfigError


@pytest.fixture
def images(tmp_path: Path, posters: list[Path]) -> list[str | None]:
    """Six items' posters, copied from real ones: three good, one truncated, one CMYK, one absent."""
    folder = tmp_path / "images"
    folder.mkdir()
    images: list[str | None] = []
    for i in range(3):
        images.append(str(shutil.copy(posters[i], folder / f"{i}.jpg")))
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(posters[3].read_bytes()[:2000])
    cmyk = folder / "cmyk.jpg"
    Image.open(posters[4]).convert("CMYK").save(cmyk)
    return [*images, str(truncated), str(cmyk), None]


@pytest.fixture
def mixed(tmp_path: Path, images: list[str | None], sounds: list[Path]) -> dict[str, list[str | None]]:
    """Six items with real text, posters and sounds; items 3-5 carry broken or repairable inputs."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    audio: list[str | None] = [str(p) for p in sounds[:3]]
    samples, rate = sf.read(sounds[3], dtype="float32")
    sf.write(folder / "silent.wav", np.zeros_like(samples), rate)
    audio += [str(folder / "silent.wav"), str(folder / "missing.wav"), None]
    text: dict[str, list[str | None]] = {
        "title": ["Toy Story (1995)", "Jumanji (1995)", "Heat (1995)", None, "Sabrina (1995)", "  "],
        "genres": ["Animation, Children", "Adventure, Fantasy", "Action, Crime", None, None, None],
    }
    return {"title": text["title"], "genres": text["genres"], "image": images, "audio": audio}


@pytest.fixture
def ready(minilm: MiniLMEncoder, effnet: EfficientNetLiteEncoder, aisfx: AisfxEncoder) -> dict[str, object]:
    return {"text": minilm, "image": effnet, "audio": aisfx}


def test_broken_inputs_are_reported_and_nothing_else_is_lost(
    mixed: dict[str, list[str | None]], ready: dict, tmp_path: Path
) -> None:
    dataset = make_dataset(
        {"title": mixed["title"], "genres": mixed["genres"]}, mixed["image"], mixed["audio"]
    )
    config = {"text": {"fields": ["title", "genres"], "batch_size": 2}, "image": {"batch_size": 2}}
    result = encode_dataset(dataset, config, tmp_path / "cache", encoders=ready, progress=False)
    vectors, present, report = result.vectors, result.present, result.report

    assert {k: v.shape for k, v in vectors.items()} == {
        "text": (6, 384),
        "image": (6, 1280),
        "image_labels": (6, 1000),
        "audio": (6, 512),
    }
    assert present["text"].tolist() == [True, True, True, False, True, False]
    assert present["image"].tolist() == [True, True, True, False, True, False]
    assert present["audio"].tolist() == [True, True, True, False, False, False]
    for name, vec in vectors.items():
        assert vec.dtype == np.float32 and np.isfinite(vec).all()
        assert not vec[~present[name]].any(), f"{name}: rows without input must stay zero"

    reasons = {(i.modality, i.item, i.action): i.reason for i in report.issues}
    assert reasons[("text", 3, "skipped")].startswith("empty text")
    assert reasons[("text", 5, "skipped")].startswith("empty text")
    assert reasons[("image", 3, "skipped")].startswith("truncated image data")
    assert reasons[("image", 4, "repaired")] == "converted CMYK to RGB"
    assert reasons[("audio", 3, "skipped")].startswith("silent")
    assert reasons[("audio", 4, "skipped")] == "file not found"
    assert len(report.issues) == 6
    assert report.issues[0].item_id == str(dataset.item_ids[report.issues[0].item])
    counts = report.counts
    assert (counts["image"].encoded, counts["image"].absent, counts["image"].skipped) == (4, 1, 1)
    assert (counts["audio"].encoded, counts["audio"].absent, counts["audio"].skipped) == (3, 1, 2)

    # the good items' vectors are what their encoders give them directly
    assert np.allclose(
        vectors["text"][0],
        ready["text"].encode(["title: Toy Story (1995). genres: Animation, Children"])[0],
        atol=1e-5,
    )
    assert np.allclose(vectors["image"][:3], ready["image"].encode(mixed["image"][:3]), atol=1e-4)
    assert np.allclose(vectors["audio"][:3], ready["audio"].encode(mixed["audio"][:3]), atol=1e-4)

    saved = json.loads(report.save(tmp_path / "ingest.json").read_text())
    assert saved["counts"]["audio"]["skipped"] == 2 and len(saved["issues"]) == 6
    assert "audio: 6 items, 3 encoded, 0 from cache, 1 without input, 2 skipped" in report.summary()


def test_second_run_encodes_only_new_or_changed_items(
    images: list[str | None], effnet: EfficientNetLiteEncoder, tmp_path: Path, posters: list[Path]
) -> None:
    """Image only: needs neither the recordings nor the audio and text encoders."""
    ready = {"image": effnet}
    config = {"text": None, "audio": None, "image": {"batch_size": 2, "labels": False}}
    cache = tmp_path / "cache"
    first = encode_dataset(make_dataset(image=images), config, cache, encoders=ready, progress=False)
    assert set(first.vectors) == {"image"}

    shutil.copy(posters[7], images[0])  # changed content under the same path
    batches: list[tuple[str, int, int]] = []
    second = encode_dataset(
        make_dataset(image=[*images, str(posters[8])]),  # and one new item
        config,
        cache,
        encoders=ready,
        progress=False,
        on_batch=lambda *args: batches.append(args),
    )
    counts = second.report.counts["image"]
    assert (counts.encoded, counts.cached, counts.skipped) == (2, 3, 1)
    assert batches == [("image", 3, 3)]  # the changed and new items, plus the retried broken one
    assert np.array_equal(second.vectors["image"][1:5], first.vectors["image"][1:5])
    assert np.allclose(second.vectors["image"][0], ready["image"].encode([posters[7]])[0], atol=1e-4)
    assert second.report.repaired("image")[0].reason == "converted CMYK to RGB"  # notes survive the cache


_KILLED_RUN = """
import json, sys, time
import numpy as np
from crossrec.data.schema import Dataset, Interactions, ItemContent
from crossrec.encoders import encode_dataset

paths, cache, config = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
n = len(paths)
inter = Interactions([0], [0], [1.0], 1, n)
data = Dataset("mini", np.array([1]), np.arange(n), inter, ItemContent(image=paths))

def slowly(modality, done, pending):
    print(done, flush=True)
    time.sleep(0.5)

encode_dataset(data, config, cache, threads=1, progress=False, on_batch=slowly)
print("finished", flush=True)
"""


def test_kill_9_mid_run_then_resume_gives_identical_vectors(
    tmp_path: Path, posters: list[Path], effnet: EfficientNetLiteEncoder
) -> None:
    paths = [str(p) for p in posters[:12]]
    config = {"text": None, "audio": None, "image": {"batch_size": 2, "backend": "torch"}}  # as `effnet`
    cache = tmp_path / "cache"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(paths), str(cache), json.dumps(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # each line: items done, printed once that batch is cached
            if line.strip() == "finished" or int(line) >= 4:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= len(list((cache / "image").glob("*/shard-*.npz"))) < 6

    data = make_dataset(image=paths)
    resumed = encode_dataset(data, config, cache, encoders={"image": effnet}, threads=1, progress=False)
    counts = resumed.report.counts["image"]
    assert 4 <= counts.cached < 12 and counts.cached + counts.encoded == 12
    clean = encode_dataset(
        data, config, tmp_path / "clean", encoders={"image": effnet}, threads=1, progress=False
    )
    for name in ("image", "image_labels"):
        assert np.array_equal(resumed.vectors[name], clean.vectors[name])


def test_config_errors_and_modalities_the_data_lacks(tmp_path: Path, posters: list[Path]) -> None:
    data = make_dataset(image=[str(posters[0])])
    with pytest.raises(ConfigError, match=r"encoders\.image\.model: aisfx encodes audio, not image"):
        encode_dataset(data, {"image": {"model": "aisfx"}}, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"encoders\.text\.model: unknown model 'bert'"):
        encode_dataset(make_dataset({"title": ["x"]}), {"text": {"model": "bert"}}, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="invalid encoders config"):
        encode_dataset(data, {"video": {}}, tmp_path, progress=False)
    result = encode_dataset(data, EncodersConfig(image=None), tmp_path, progress=False)
    assert result.vectors == {} and result.report.not_in_dataset == ["text", "audio"]
