"""EfficientNet-Lite on real posters, and every way an image file breaks, made from real posters."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossrec.encoders.base import BadInput
from crossrec.encoders.image import LABELS_OUTPUT, EfficientNetLiteEncoder, read_rgb


def test_posters_give_features_and_label_distributions(
    effnet: EfficientNetLiteEncoder, posters: list[Path]
) -> None:
    loaded = [effnet.load(p) for p in posters]
    out = effnet.encode_loaded(loaded)
    features, probs = out["embedding"], out[LABELS_OUTPUT]
    assert features.shape == (16, 1280) and features.dtype == np.float32 and effnet.dim == 1280
    assert probs.shape == (16, 1000) and (probs >= 0).all()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.isfinite(features).all() and not np.allclose(features[0], features[1])
    # the same numbers as the package's own forward pass
    with torch.inference_mode():
        logits = effnet._net(torch.from_numpy(np.stack([item.data for item in loaded[:4]])))
    assert np.allclose(torch.softmax(logits, 1).numpy(), probs[:4], atol=1e-5)


def test_preprocessing_is_a_centre_crop_in_minus_one_to_one(
    effnet: EfficientNetLiteEncoder, posters: list[Path]
) -> None:
    item = effnet.load(posters[0])
    assert item.data.shape == (3, 224, 224) and item.notes == []
    assert -1.0 <= item.data.min() < item.data.max() <= 1.0


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def first_poster_vector(effnet: EfficientNetLiteEncoder, posters: list[Path]) -> np.ndarray:
    return effnet.encode([posters[0]])[0]


@pytest.mark.parametrize(
    ("mode", "suffix", "note"),
    [
        ("CMYK", ".jpg", "converted CMYK to RGB"),
        ("L", ".png", "converted L to RGB"),
        ("RGBA", ".png", "composited RGBA transparency onto white"),
        ("LA", ".png", "composited LA transparency onto white"),
        ("I;16", ".png", "rescaled I;16 greyscale to 8-bit RGB"),
    ],
)
def test_other_colour_modes_are_converted_with_a_note(
    effnet: EfficientNetLiteEncoder,
    posters: list[Path],
    first_poster_vector: np.ndarray,
    tmp_path: Path,
    mode: str,
    suffix: str,
    note: str,
) -> None:
    original = Image.open(posters[0]).convert("RGB")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(original.convert("L"), dtype=np.uint16) * 257)
    elif mode in ("RGBA", "LA"):
        converted = original.convert(mode)
        converted.putalpha(Image.linear_gradient("L").resize(original.size))
    else:
        converted = original.convert(mode)
    path = tmp_path / f"poster{suffix}"
    converted.save(path)
    item = effnet.load(path)
    assert item.notes == [note]
    vector = effnet.encode_loaded([item])["embedding"][0]
    assert np.isfinite(vector).all()
    assert _cos(vector, first_poster_vector) > (0.9 if mode == "CMYK" else 0.5)


def test_palette_with_transparency(
    effnet: EfficientNetLiteEncoder, posters: list[Path], tmp_path: Path
) -> None:
    path = tmp_path / "poster.gif"
    Image.open(posters[1]).convert("P").save(path, transparency=0)
    assert effnet.load(path).notes == ["composited P transparency onto white"]


def _png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims `width` x `height` (the CRC fixed, so only the size lies)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    raw = zlib.compress(b"\x00\x00\x00\x00")
    idat = b"IDAT" + raw
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(raw)) + idat + struct.pack(">I", zlib.crc32(idat))
        + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )  # fmt: skip


def _broken(kind: str, poster: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.jpg"
    data = poster.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt_header":
        path.write_bytes(data[:2] + bytes(len(data) - 2))
    elif kind == "not_an_image":
        path.write_bytes(b"<html>404 Not Found</html>\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("bomb_header", "bomb_over_limit"):
        path = path.with_suffix(".png")
        side = 60_000 if kind == "bomb_header" else 10_000  # 3.6e9 pixels; 1e8 (PIL's limit is ~8.9e7)
        path.write_bytes(_png_claiming(side, side))
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "file not found"),
        ("empty", r"empty file \(0 bytes\)"),
        ("not_an_image", "not a readable image"),
        ("corrupt_header", "not a readable image"),
        ("truncated", "truncated image data"),
        ("bomb_header", "decompression bomb"),
        ("bomb_over_limit", "decompression bomb"),
        ("folder", "is a folder"),
    ],
)
def test_broken_files_are_bad_input_with_a_reason(
    effnet: EfficientNetLiteEncoder, posters: list[Path], tmp_path: Path, kind: str, reason: str
) -> None:
    path = _broken(kind, posters[2], tmp_path)
    with pytest.raises(BadInput, match=reason):
        effnet.load(path)


def test_pixel_limit_is_checked_before_decoding(posters: list[Path]) -> None:
    with pytest.raises(
        BadInput, match=r"decompression bomb: \d+x\d+ = [\d,]+ pixels is over the 1,000-pixel"
    ):
        read_rgb(posters[0], max_pixels=1000)
