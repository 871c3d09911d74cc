"""Audio encoder: the aiSFX sound-effects network (512-d), on fixed-length windows pooled per clip.

aisfx's own pipeline needs librosa or Essentia and pins numpy 1.23, so crossrec carries the small part
it needs: decoding with soundfile (libsndfile), resampling with soxr, a mel spectrogram in torch laid
out as the network was trained (time x 96 mel bands, log10(1e4 x + 1), scaled by the paper's maximum),
and the network itself (the checkpoint's `embedding_net`, a 4-block CNN). Windows are 100 frames
(about 2.3 s) with 50% overlap, as in the paper; a clip's vector is their mean (or max).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.fast import Backend, Precision, export_onnx
from crossrec.encoders.registry import ResolvedModel

SAMPLE_RATE = 44_100
N_FFT, HOP, N_MELS = 2048, 1024, 96
WINDOW_FRAMES, WINDOW_HOP = 100, 50
SPEC_MAX = 9.457798957824707  # aisfx's 'original' normalisation: the maximum over the paper's data
SILENCE_PEAK = 1e-5  # -100 dBFS: below this a clip carries no sound to embed


class AisfxEncoder(Encoder):
    """aiSFX (X-Sequential-CE, ISMIR 2022) embeddings of whole clips."""

    modality: ClassVar[str] = "audio"
    onnx_precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # int8 convolutions need calibration data

    def __init__(
        self,
        model: ResolvedModel,
        *,
        pooling: Literal["mean", "max"] = "mean",
        max_seconds: float = 600.0,
        backend: Backend = "torch",
        precision: Precision = "fp32",
        artifact_dir: str | Path | None = None,
    ) -> None:
        settings = {"pooling": pooling, "max_seconds": max_seconds, "sr": SAMPLE_RATE}
        super().__init__(model, settings, backend=backend, precision=precision)
        self.pooling = pooling
        self.max_seconds = max_seconds
        self._net = load_aisfx_network(model.weights)
        self._mel = torch.from_numpy(mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS))
        self.outputs = {MAIN_OUTPUT: self._net.dim}
        self._onnx = self._onnx_model(artifact_dir, self._export)

    def load(self, raw: Any) -> Loaded:
        samples, notes = read_audio(Path(raw), SAMPLE_RATE, self.max_seconds)
        return Loaded(windows(self.spectrogram(samples)), notes)

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """(frames, 96) normalised log-mel spectrogram of mono samples at SAMPLE_RATE."""
        y = torch.from_numpy(samples)
        stft = torch.stft(
            y,
            N_FFT,
            HOP,
            window=torch.hann_window(N_FFT),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mel = self._mel @ stft.abs().square()
        return (torch.log10(mel * 1e4 + 1.0) / SPEC_MAX).T.contiguous().numpy()

    def encode_loaded(self, batch: Sequence[Loaded]) -> dict[str, np.ndarray]:
        blocks = np.concatenate([item.data for item in batch])
        if self._onnx is not None:
            per_window = torch.from_numpy(self._onnx.run({"windows": blocks})[0])
        else:
            with torch.inference_mode():
                per_window = self._net(torch.from_numpy(blocks))
        counts = [len(item.data) for item in batch]
        pooled = [
            chunk.mean(dim=0) if self.pooling == "mean" else chunk.amax(dim=0)
            for chunk in torch.split(per_window, counts)
        ]
        return {MAIN_OUTPUT: torch.stack(pooled).numpy().astype(np.float32)}

    def _export(self, path: Path) -> None:
        example = torch.zeros(2, WINDOW_FRAMES, N_MELS)
        export_onnx(self._net, (example,), path, {"windows": {0: "batch"}}, {MAIN_OUTPUT: {0: "batch"}})


def read_audio(path: Path, sample_rate: int, max_seconds: float) -> tuple[np.ndarray, list[str]]:
    """Mono float32 samples at `sample_rate`, peak-normalised, or BadInput saying what is wrong."""
    import soundfile as sf
    import soxr

    if not path.exists():
        raise BadInput("file not found")
    if path.is_dir():
        raise BadInput("is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise BadInput("empty file (0 bytes)")
    notes = []
    try:
        with sf.SoundFile(path) as fh:
            limit = int(max_seconds * fh.samplerate)
            data = fh.read(frames=limit, dtype="float32", always_2d=True)
            native_rate, total, log = fh.samplerate, fh.frames, fh.extra_info
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise BadInput(f"cannot decode audio: {exc}") from exc
    if len(data) == 0:
        raise BadInput("no audio samples could be decoded (empty or truncated file)")
    if "should be" in log:
        notes.append(
            f"truncated file: its header promises more data; used the {len(data) / native_rate:.2f} s present"
        )
    if total > limit:
        notes.append(f"longer than {max_seconds:g} s: used the first {max_seconds:g} s")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise BadInput("audio samples contain NaN or infinity")
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise BadInput(f"silent (peak amplitude {peak:.2g})")
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate)
    return np.ascontiguousarray(mono / peak, dtype=np.float32), notes


def windows(spec: np.ndarray) -> np.ndarray:
    """(n_windows, 100, 96) overlapping blocks; partial tails are dropped unless the clip is shorter than
    one window, which is zero-padded (aisfx's `blocking` with drop_partial_block=True)."""
    if len(spec) < WINDOW_FRAMES:
        spec = np.pad(spec, ((0, WINDOW_FRAMES - len(spec)), (0, 0)))
    starts = range(0, len(spec) - WINDOW_FRAMES + 1, WINDOW_HOP)
    return np.stack([spec[s : s + WINDOW_FRAMES] for s in starts]).astype(np.float32)


def mel_filterbank(
    sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """HTK-scale triangular filters, each summing to 1 ("unit_sum", as aisfx's librosa and Essentia
    paths both ask); shape (n_mels, n_fft // 2 + 1)."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    sums = weights.sum(axis=1, keepdims=True)
    weights = np.where(sums > np.finfo(np.float32).tiny, weights / np.where(sums > 0, sums, 1.0), weights)
    return weights.astype(np.float32)


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * float(np.log10(1.0 + hz / 700.0))


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, kernel_size=pool) if pool > 1 else x


class AisfxNetwork(nn.Module):
    """aisfx's EmbeddingNet('max', 3, 1, 64): (batch, time, mel) -> (batch, 512); mean over mel bands,
    max over time."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv_block1 = _ConvBlock(1, width)
        self.conv_block2 = _ConvBlock(width, width * 2)
        self.conv_block3 = _ConvBlock(width * 2, width * 4)
        self.conv_block4 = _ConvBlock(width * 4, width * 8)
        self.dim = width * 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        x = self.conv_block1(x, 2)
        x = self.conv_block2(x, 2)
        x = self.conv_block3(x, 2)
        x = self.conv_block4(x, 1)
        return x.mean(dim=3).amax(dim=2)


def load_aisfx_network(path: Path) -> AisfxNetwork:
    """The embedding network from aisfx's checkpoint (a (state_dict, dataset map) pair, pickled with numpy
    scalars: those few numpy types are allow-listed so torch's safe loader still guards the rest)."""
    from numpy._core.multiarray import scalar

    allowed = [
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        np.dtypes.Float64DType,
        np.dtypes.Int64DType,
    ]
    with torch.serialization.safe_globals(allowed):
        state, _datasets = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "embedding_net."
    net = AisfxNetwork()
    net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return net.eval()
