"""Uploads through the HTTP API on a bundle with a real image encoder (EfficientNet-Lite over the
posters of the 60 most-watched films): a real poster finds its film; a decompression bomb, a
corrupt PNG, a lying content type and an oversized upload are refused with the status and a reason;
malformed audio is refused the same way (the audio encoder on real freedesktop recordings: movielens
has no audio); and nothing a client writes in item metadata is ever opened as a path."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from crossrec.encoders.modalities import AudioEncoderConfig, EncodersConfig, build_encoder
from crossrec.experiment import load_bundle, run_experiment
from crossrec.serve import app as app_module
from crossrec.serve.app import create_app
from crossrec.serve.content import ContentEncoders
from crossrec.serve.state import ServingState

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "secret"}
SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")


@pytest.fixture(scope="module")
def image_bundle(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serve-images")
    config = {
        "name": "served-images",
        "output_dir": str(out),
        "seeds": [0],
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small")},
        "encode": {
            "cache_dir": str(out / "cache"),
            "max_items": 60,
            "models": {
                "text": {"model": "wordllama-l2-supercat-256", "fields": ["title", "genres"]},
                "image": {"model": "efficientnet-lite0", "labels": False, "max_pixels": 4_000_000},
                "audio": None,
            },
        },
        "split": {"method": "temporal", "holdout": 0.2},
        "models": [
            {
                "name": "alpharec",
                "params": {
                    "embedding_dim": 16,
                    "hidden_dim": 32,
                    "modalities": ["text", "image"],
                    "n_negatives": 4,
                    "epochs": 1,
                },
            }
        ],
        "report": {"plots": False},
    }
    result = run_experiment(config, quiet=True)
    assert result.bundle_dir is not None
    return load_bundle(result.bundle_dir)


def _client(bundle, **limits) -> TestClient:
    return TestClient(create_app(ServingState(bundle, exact_below=1000), api_key="secret", **limits))


@pytest.fixture(scope="module")
def client(image_bundle) -> TestClient:
    return _client(image_bundle)


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 8x8 PNG whose IHDR (with its CRC) claims width x height pixels: 100 bytes or so."""
    data = bytearray(_png())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _media(client: TestClient, content: bytes, content_type: str, modality: str = "image", **form):
    return client.post(
        "/search/media",
        data={"modality": modality, **form},
        files={"file": (f"upload.{content_type.split('/')[-1]}", content, content_type)},
    )


def _encoded_poster(bundle) -> tuple[str, Path]:
    present = bundle.features["image"].present
    for i in np.flatnonzero(present):
        image = bundle.items[i].get("image")
        if image and Path(image).is_file():
            return str(bundle.item_ids[i]), Path(image)
    pytest.fail("no encoded item with a poster file")


def test_a_real_poster_finds_its_film(client, image_bundle):
    assert 0 < image_bundle.features["image"].present.sum() <= 60
    item_id, poster = _encoded_poster(image_bundle)
    found = _media(client, poster.read_bytes(), "image/jpeg", k=5)
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    assert len(items) == 5 and items[0]["item_id"] == item_id and items[0]["score"] > 0.99
    assert items[0]["image"] is True
    as_png = io.BytesIO()
    Image.open(poster).save(as_png, "PNG")
    again = _media(client, as_png.getvalue(), "image/png", k=1)
    assert again.status_code == 200 and again.json()["items"][0]["item_id"] == item_id


def test_a_decompression_bomb_is_refused_before_decoding(client):
    # 900 million pixels trips PIL's own check on open; 9 million the encoder's max_pixels (4 million).
    for (width, height), limit in (
        ((30_000, 30_000), f"limit of {2 * Image.MAX_IMAGE_PIXELS} pixels"),
        ((3000, 3000), None),
    ):
        bomb = _bomb(width, height)
        assert len(bomb) < 200 and struct.unpack(">II", bomb[16:24]) == (width, height)
        refused = _media(client, bomb, "image/png")
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith("image upload: decompression bomb"), detail
        assert (limit or "3000x3000 = 9,000,000 pixels is over the 4,000,000-pixel limit") in detail, detail


def test_corrupt_and_truncated_images_are_422_with_a_reason(client):
    png = _png((64, 64))
    truncated = _media(client, png[: len(png) // 2], "image/png")
    assert truncated.status_code == 422, truncated.text
    assert truncated.json()["detail"].startswith("image upload: ")
    assert "truncated" in truncated.json()["detail"] or "corrupt" in truncated.json()["detail"]
    garbage = _media(client, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image/png")
    assert garbage.status_code == 422 and "image upload: " in garbage.json()["detail"]
    jpeg_magic = _media(client, b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg")
    assert jpeg_magic.status_code == 422 and "image upload: " in jpeg_magic.json()["detail"]


def test_lying_or_missing_content_types_are_415(client):
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, "GIF")
    lying = _media(client, gif.getvalue(), "image/png")
    assert lying.status_code == 415 and "not image/png" in lying.json()["detail"]
    png_as_jpeg = _media(client, _png(), "image/jpeg")
    assert png_as_jpeg.status_code == 415 and "not image/jpeg" in png_as_jpeg.json()["detail"]
    wrong_kind = _media(client, _png(), "application/octet-stream")
    assert wrong_kind.status_code == 415 and "image/png" in wrong_kind.json()["detail"]
    audio_as_image = _media(client, b"OggS" + b"\x00" * 64, "audio/ogg")
    assert audio_as_image.status_code == 415
    gif_as_gif = _media(client, gif.getvalue(), "image/gif", k=3)  # the truth is fine
    assert gif_as_gif.status_code == 200, gif_as_gif.text


def test_uploads_over_the_limit_are_413(image_bundle):
    small = _client(image_bundle, max_upload_bytes=4096)
    too_big = _media(small, _png((8, 8)) + b"\x00" * 8000, "image/png")  # the upload check
    assert too_big.status_code == 413 and "4,096-byte limit" in too_big.json()["detail"]
    huge = _media(small, b"\x89PNG" + b"\x00" * 100_000, "image/png")  # the body check, unread
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]
    put = small.put(
        "/items/big-1",
        data={"metadata": "{}"},
        files={"image": ("a.png", _png() + b"\x00" * 8000, "image/png")},
        headers=KEY,
    )
    assert put.status_code == 413
    assert small.get("/items/big-1").status_code == 404  # nothing was added
    anonymous = small.put("/items/big-1", data={"metadata": "{"}, files={"image": ("a.png", b"x" * 100_000)})
    assert anonymous.status_code == 401  # without the key: 401 before any size or parse check


def test_metadata_is_never_opened_as_a_path(client, tmp_path):
    secret = tmp_path / "poster.png"
    secret.write_bytes(_png((32, 32)))
    meta = {"title": "Path Games", "genres": "Drama", "image": "/etc/passwd", "audio": str(secret)}
    put = client.put("/items/new-path", data={"metadata": json.dumps(meta)}, headers=KEY)
    assert put.status_code == 200, put.text
    assert "image" not in put.json()["modalities"] and "audio" not in put.json()["modalities"]
    item = client.get("/items/new-path").json()
    assert item["image"] is False and item["audio"] is False and item["title"] == "Path Games"
    assert "/etc/passwd" not in json.dumps(item)
    for url in ("file:///etc/passwd", "http://127.0.0.1:1/x.png"):
        meta = {"title": "URL Games", "image": url}
        assert (
            client.put("/items/new-url", data={"metadata": json.dumps(meta)}, headers=KEY).status_code == 200
        )
        assert client.get("/items/new-url").json()["image"] is False
    similar = client.get("/items/new-path/similar", params={"modality": "image"})
    assert similar.status_code == 404 and "no image features" in similar.json()["detail"]
    bad_type = client.put(
        "/items/new-x", data={"metadata": json.dumps({"image": ["/etc/passwd"]})}, headers=KEY
    )
    assert bad_type.status_code == 422


def test_a_poster_uploaded_with_a_new_item_is_encoded(client, image_bundle):
    _, poster = _encoded_poster(image_bundle)
    put = client.put(
        "/items/new-poster",
        data={"metadata": json.dumps({"title": "Poster Copy"})},
        files={"image": ("p.jpg", poster.read_bytes(), "image/jpeg")},
        headers=KEY,
    )
    assert put.status_code == 200, put.text
    assert "image" in put.json()["modalities"] and client.get("/items/new-poster").json()["image"] is True
    bomb = client.put(
        "/items/new-bomb",
        data={"metadata": "{}"},
        files={"image": ("b.png", _bomb(), "image/png")},
        headers=KEY,
    )
    assert bomb.status_code == 422 and "decompression bomb" in bomb.json()["detail"]
    assert client.get("/items/new-bomb").status_code == 404


@pytest.fixture(scope="module")
def audio_encoders(image_bundle) -> ContentEncoders:
    """The image bundle's encoders plus a real aiSFX audio encoder (movielens has no audio), the
    way ContentEncoders checks it: its config, and features recorded with its fingerprint."""
    cfg = AudioEncoderConfig()
    fingerprint = build_encoder("audio", cfg).fingerprint
    encode = image_bundle.config.encode
    models = EncodersConfig.model_validate({**encode.models.model_dump(), "audio": cfg.model_dump()})
    fake = SimpleNamespace(
        config=SimpleNamespace(encode=encode.model_copy(update={"models": models})),
        features={**image_bundle.features, "audio": SimpleNamespace(source=fingerprint)},
        items=image_bundle.items,
    )
    return ContentEncoders(fake)


def test_malformed_audio_is_422_and_real_audio_encodes(audio_encoders, image_bundle, monkeypatch):
    recordings = sorted(SOUNDS.glob("*.oga"))
    if not recordings:
        pytest.skip(f"no .oga recordings in {SOUNDS}")
    assert "audio" in audio_encoders.modalities
    vectors = audio_encoders.encode("audio", recordings[0])
    assert np.isfinite(vectors["audio"]).all() and np.linalg.norm(vectors["audio"]) > 0

    monkeypatch.setattr(app_module, "ContentEncoders", lambda bundle: audio_encoders)
    client = _client(image_bundle)
    rng = np.random.default_rng(0)
    malformed = _media(client, b"OggS" + rng.bytes(4000), "audio/ogg", modality="audio")
    assert malformed.status_code == 422, malformed.text
    assert malformed.json()["detail"].startswith("audio upload: cannot decode audio")
    assert "/tmp" not in malformed.json()["detail"]  # the reason, not the server's temporary file
    empty_wav = _media(client, b"RIFF" + b"\x00" * 40, "audio/wav", modality="audio")
    assert empty_wav.status_code == 422 and empty_wav.json()["detail"].startswith("audio upload: ")
    lying = _media(client, recordings[0].read_bytes(), "audio/flac", modality="audio")
    assert lying.status_code == 415 and "not audio/flac" in lying.json()["detail"]
    # A real recording passes every check and is encoded; this bundle has no audio features to search.
    real = _media(client, recordings[0].read_bytes(), "audio/ogg", modality="audio")
    assert real.status_code == 404 and "audio" in real.json()["detail"]
