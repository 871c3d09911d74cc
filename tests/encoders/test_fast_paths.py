"""The ONNX Runtime paths: same vectors as the torch models on real inputs, graphs exported once, verified
and rebuilt when damaged, and fingerprints that keep each path's vectors apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset

from crossrec.encoders import build_encoder, encode_dataset
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.fast import MANIFEST_FILE, MODEL_FILE
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.modalities import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder, item_texts
from crossrec.errors import ConfigError


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-artifacts")


@pytest.fixture(scope="module")
def movie_texts(shared_data: Path) -> list[str]:
    """24 real item texts as the demo builds them: title, genres and TMDB overview (long and short)."""
    ml = shared_data / "movielens-small"
    movies = pd.read_csv(ml / "ml-latest-small" / "movies.csv").head(200)
    tmdb = pd.read_csv(ml / "text_extra" / "tmdb_3000_movies.csv", usecols=["title", "overview"])
    overview = movies.title.str.replace(r" \(\d{4}\)$", "", regex=True).map(
        dict(zip(tmdb.title, tmdb.overview, strict=True))
    )
    content = make_dataset(
        {"title": movies.title.tolist(), "genres": movies.genres.tolist(), "overview": overview.tolist()}
    ).content
    texts = [t for t in item_texts(content, ["title", "genres", "overview"]) if t]
    return texts[:24]


def cosines(fast: np.ndarray, plain: np.ndarray) -> np.ndarray:
    unit = [m / np.linalg.norm(m, axis=1, keepdims=True) for m in (fast, plain)]
    return (unit[0] * unit[1]).sum(axis=1)


@pytest.mark.parametrize(
    ("precision", "floor"),
    [("fp32", 0.9999), ("int8", 0.99)],
)
def test_minilm_onnx_matches_torch(
    minilm: MiniLMEncoder, movie_texts: list[str], artifacts: Path, precision: str, floor: float
) -> None:
    fast = MiniLMEncoder(minilm.model, backend="onnx", precision=precision, artifact_dir=artifacts)  # type: ignore[arg-type]
    plain_vectors, fast_vectors = minilm.encode(movie_texts), fast.encode(movie_texts)
    assert fast_vectors.shape == plain_vectors.shape == (len(movie_texts), 384)
    assert cosines(fast_vectors, plain_vectors).min() >= floor
    assert np.allclose(np.linalg.norm(fast_vectors, axis=1), 1.0, atol=1e-5)


def test_efficientnet_onnx_matches_torch(
    effnet: EfficientNetLiteEncoder, posters: list[Path], artifacts: Path
) -> None:
    fast = EfficientNetLiteEncoder(effnet.model, backend="onnx", artifact_dir=artifacts)
    loaded = [effnet.load(p) for p in posters[:8]]
    plain, quick = effnet.encode_loaded(loaded), fast.encode_loaded(loaded)
    assert cosines(quick["embedding"], plain["embedding"]).min() >= 0.9999
    assert np.allclose(quick["labels"], plain["labels"], atol=1e-4)
    assert np.array_equal(quick["labels"].argmax(axis=1), plain["labels"].argmax(axis=1))


def test_aisfx_onnx_matches_torch(aisfx: AisfxEncoder, sounds: list[Path], artifacts: Path) -> None:
    fast = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=artifacts)
    loaded = [aisfx.load(p) for p in sounds[:6]]  # clips of one and of several windows
    plain, quick = aisfx.encode_loaded(loaded)["embedding"], fast.encode_loaded(loaded)["embedding"]
    assert cosines(quick, plain).min() >= 0.9999


def test_graph_is_exported_once_then_reused(aisfx: AisfxEncoder, tmp_path: Path) -> None:
    first = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=tmp_path)
    assert first._onnx is not None and first._onnx.rebuilt == "not exported yet"
    graph = tmp_path / first.fingerprint / MODEL_FILE
    stamp = graph.stat().st_mtime_ns
    second = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=tmp_path)
    assert second._onnx is not None and second._onnx.rebuilt is None
    assert graph.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in graph.parent.iterdir()) == [MANIFEST_FILE, MODEL_FILE]  # no temp files


def test_damaged_graph_or_manifest_is_detected_and_rebuilt(
    aisfx: AisfxEncoder, sounds: list[Path], tmp_path: Path
) -> None:
    built = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=tmp_path)
    expected = built.encode(sounds[:2])
    graph = tmp_path / built.fingerprint / MODEL_FILE
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    graph.write_bytes(bytes(data))

    rebuilt = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=tmp_path)
    assert rebuilt._onnx is not None and "does not match its manifest" in str(rebuilt._onnx.rebuilt)
    assert np.allclose(rebuilt.encode(sounds[:2]), expected, atol=1e-6)

    (graph.parent / MANIFEST_FILE).write_text("{")
    again = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=tmp_path)
    assert again._onnx is not None and again._onnx.rebuilt == "unreadable manifest"
    assert json.loads((graph.parent / MANIFEST_FILE).read_text())["sha256"]


def test_each_path_has_its_own_fingerprint_and_cache(
    minilm: MiniLMEncoder, aisfx: AisfxEncoder, sounds: list[Path], artifacts: Path, tmp_path: Path
) -> None:
    fingerprints = {
        MiniLMEncoder(minilm.model, backend=backend, precision=precision, artifact_dir=artifacts).fingerprint
        for backend, precision in [("onnx", "fp32"), ("onnx", "int8")]
    }
    assert len(fingerprints | {minilm.fingerprint}) == 3
    # plain torch keeps the fingerprint it had before fast paths existed, so its caches stay valid
    assert minilm.fingerprint == "all-MiniLM-L6-v2-53aa51172d142c89-50102ece"

    data = make_dataset(audio=[str(p) for p in sounds[:3]])
    config = {"text": None, "image": None, "audio": {"backend": "torch"}}
    fast = AisfxEncoder(aisfx.model, backend="onnx", artifact_dir=artifacts)
    encode_dataset(data, config, tmp_path, encoders={"audio": aisfx}, progress=False)
    second = encode_dataset(data, config, tmp_path, encoders={"audio": fast}, progress=False)
    assert second.report.counts["audio"].encoded == 3  # nothing taken from the torch path's cache
    assert len(list((tmp_path / "audio").iterdir())) == 2


def test_config_picks_the_path_and_rejects_what_an_encoder_lacks(artifacts: Path) -> None:
    assert (ImageEncoderConfig().backend, ImageEncoderConfig().precision) == ("onnx", "fp32")
    with pytest.raises(ConfigError, match=r"encoders\.image \(efficientnet-lite0\): no onnx int8 path"):
        build_encoder("image", ImageEncoderConfig(precision="int8"))
    with pytest.raises(ConfigError, match="precision int8 needs backend onnx"):
        build_encoder("audio", AudioEncoderConfig(backend="torch", precision="int8"))
    with pytest.raises(ConfigError, match="wordllama-l2-supercat-256 has no network to quantise"):
        build_encoder("text", TextEncoderConfig(model="wordllama", precision="int8"))
    assert isinstance(build_encoder("text", TextEncoderConfig(model="wordllama")), WordLlamaEncoder)
    audio = build_encoder("audio", AudioEncoderConfig(), artifact_dir=artifacts)
    assert audio.backend == "onnx" and (artifacts / audio.fingerprint / MODEL_FILE).is_file()
