"""Image encoder: EfficientNet-Lite, 1280-d penultimate features plus ImageNet label probabilities.

Preprocessing is PIL + numpy only (torchvision would drag a CUDA torch in): shorter side to 224, centre
crop, (x - 0.5) / 0.5 as the Lite models were trained. Decoding is defensive: every way an image file
breaks ends in BadInput with a reason, and odd colour modes are converted with a note.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.fast import Backend, Precision, export_onnx
from crossrec.encoders.registry import ResolvedModel, require_code

LABELS_OUTPUT = "labels"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class EfficientNetLiteEncoder(Encoder):
    """EfficientNet-Lite{0..4} from efficientnet-lite-pytorch's model code and the pinned weights."""

    modality: ClassVar[str] = "image"
    onnx_precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # dynamic int8 convolutions are slower on CPU

    def __init__(
        self,
        model: ResolvedModel,
        *,
        variant: str = "efficientnet-lite0",
        max_pixels: int | None = None,
        backend: Backend = "torch",
        precision: Precision = "fp32",
        artifact_dir: str | Path | None = None,
    ) -> None:
        require_code(model.spec)
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size = int(EfficientNet.get_image_size(variant))
        settings = {"variant": variant, "size": self.image_size, "resize": "bicubic-crop-1.0"}
        super().__init__(model, settings, backend=backend, precision=precision)
        net = EfficientNet.from_name(variant)
        net.load_state_dict(torch.load(model.weights, map_location="cpu", weights_only=True))
        self._net = net.eval()
        self._features = _Features(self._net)
        self.max_pixels = int(max_pixels or Image.MAX_IMAGE_PIXELS or 89_478_485)
        self.outputs = {MAIN_OUTPUT: net._fc.in_features, LABELS_OUTPUT: net._fc.out_features}
        self._onnx = self._onnx_model(artifact_dir, self._export)

    def load(self, raw: Any) -> Loaded:
        rgb, notes = read_rgb(Path(raw), self.max_pixels)
        return Loaded(preprocess(rgb, self.image_size), notes)

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        x = np.stack([item.data for item in batch])
        if self._onnx is not None:
            pooled, probs = self._onnx.run({"pixels": x})
        else:
            with torch.inference_mode():
                pooled, probs = (t.numpy() for t in self._features(torch.from_numpy(x)))
        return {MAIN_OUTPUT: pooled.astype(np.float32), LABELS_OUTPUT: probs.astype(np.float32)}

    def _export(self, path: Path) -> None:
        example = torch.zeros(2, 3, self.image_size, self.image_size)
        outputs = {MAIN_OUTPUT: {0: "batch"}, LABELS_OUTPUT: {0: "batch"}}
        export_onnx(self._features, (example,), path, inputs={"pixels": {0: "batch"}}, outputs=outputs)


class _Features(torch.nn.Module):
    """Pooled penultimate features and label probabilities in one forward pass (one graph to export)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.net.extract_features(x).mean(dim=(2, 3))
        return pooled, torch.softmax(self.net._fc(pooled), dim=1)


def read_rgb(path: Path, max_pixels: int) -> tuple[Image.Image, list[str]]:
    """Decode `path` fully into an RGB image, or raise BadInput saying what is wrong with the file.

    The pixel count is checked from the header, before any pixel is decoded, so a decompression bomb
    (a small file claiming huge dimensions) costs nothing; PIL's own bomb check is turned into an error.
    """
    if not path.exists():
        raise BadInput("file not found")
    if path.is_dir():
        raise BadInput("is a folder, not an image file")
    if path.stat().st_size == 0:
        raise BadInput("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise BadInput(
                        f"decompression bomb: {width}x{height} = {width * height:,} pixels is over the "
                        f"{max_pixels:,}-pixel limit"
                    )
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise BadInput("not a readable image (unknown format or corrupt header)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise BadInput(f"{kind} image data: {exc}") from exc


def to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """RGB without surprises: transparency goes onto white (not black), wide greyscale is rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img, []
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB"), [
            f"composited {mode} transparency onto white"
        ]
    if mode in _WIDE_GREY_MODES:
        values = np.asarray(img, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        grey = Image.fromarray(scaled.round().astype(np.uint8))
        return grey.convert("RGB"), [f"rescaled {mode} greyscale to 8-bit RGB"]
    return img.convert("RGB"), [f"converted {mode} to RGB"]


def preprocess(img: Image.Image, size: int) -> np.ndarray:
    """Shorter side to `size` (bicubic), centre crop, CHW float32 in [-1, 1]."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    crop = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32)
    return np.ascontiguousarray(((crop / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))
