"""aiSFX on real recordings (Debian's sound theme), and broken audio files made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from aisfx.models import cnn2d  # a hard dependency (.ci/run installs it): imported, never skipped

from crossrec.encoders.audio import (
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    AisfxEncoder,
    mel_filterbank,
    read_audio,
    windows,
)
from crossrec.encoders.base import BadInput


def test_clips_give_finite_deterministic_distinct_vectors(aisfx: AisfxEncoder, sounds: list[Path]) -> None:
    clips = sounds[:4]
    first = aisfx.encode(clips)
    again = aisfx.encode(clips[::-1])[::-1]
    assert first.shape == (4, 512) and first.dtype == np.float32 and aisfx.dim == 512
    assert np.isfinite(first).all()
    assert np.allclose(first, again, atol=1e-5)
    distances = np.linalg.norm(first[:, None] - first[None], axis=2)
    assert (distances[~np.eye(4, dtype=bool)] > 1e-3).all()


def test_network_matches_the_package_code(aisfx: AisfxEncoder, sounds: list[Path]) -> None:
    reference = cnn2d.EmbeddingNet("max", 3, 1, 64)
    reference.load_state_dict(aisfx._net.state_dict())
    reference.eval()
    blocks = torch.from_numpy(aisfx.load(sounds[0]).data)
    with torch.inference_mode():
        assert torch.allclose(reference(blocks), aisfx._net(blocks), atol=1e-5)


def test_mel_filters_match_librosa_when_installed() -> None:
    filters = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS)
    assert filters.shape == (96, 1025)
    assert np.allclose(filters.sum(axis=1)[filters.sum(axis=1) > 0], 1.0, atol=1e-5)
    librosa = pytest.importorskip("librosa", reason="librosa not installed: the comparison is optional")
    reference = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, htk=True, norm=1.0)
    assert np.allclose(filters, reference, atol=1e-6)


def test_resampling_and_short_clips(aisfx: AisfxEncoder, sounds: list[Path], tmp_path: Path) -> None:
    samples, rate = sf.read(sounds[0], dtype="float32")
    resampled = tmp_path / "at48k.wav"
    sf.write(resampled, samples[: rate // 2], rate)  # half a second
    twice = tmp_path / "at22k.wav"
    sf.write(twice, samples[: rate // 2][::2], rate // 2)
    loaded = aisfx.load(resampled)
    assert loaded.data.shape == (1, WINDOW_FRAMES, N_MELS)  # shorter than one window: one padded window
    a, b = aisfx.encode([resampled, twice])
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.8  # same sound at another rate


def test_windows_overlap_by_half_and_drop_partial_tails() -> None:
    spec = np.arange(260 * 96, dtype=np.float32).reshape(260, 96)
    blocks = windows(spec)
    assert blocks.shape == (4, 100, 96)  # starts 0, 50, 100, 150; 200..260 is partial
    assert blocks[1, 0, 0] == spec[50, 0]


def _write(kind: str, real: Path, tmp_path: Path) -> Path:
    samples, rate = sf.read(real, dtype="float32")
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "zero_length":
        sf.write(path, samples[:0], rate)
    elif kind == "silent":
        sf.write(path, np.zeros_like(samples), rate)
    elif kind == "truncated_ogg":
        path = path.with_suffix(".ogg")
        sf.write(path, samples, rate)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "not_audio":
        path.write_bytes(b"ID3 this is not really audio" * 10)
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "file not found"),
        ("empty", r"empty file \(0 bytes\)"),
        ("zero_length", "no audio samples"),
        ("silent", r"silent \(peak amplitude 0\)"),
        ("truncated_ogg", "no audio samples|cannot decode"),
        ("not_audio", "cannot decode audio"),
        ("folder", "is a folder"),
    ],
)
def test_broken_audio_is_bad_input_with_a_reason(
    aisfx: AisfxEncoder, sounds: list[Path], tmp_path: Path, kind: str, reason: str
) -> None:
    with pytest.raises(BadInput, match=reason):
        aisfx.load(_write(kind, sounds[1], tmp_path))


def test_truncated_wav_is_used_as_far_as_it_goes(
    aisfx: AisfxEncoder, sounds: list[Path], tmp_path: Path
) -> None:
    samples, rate = sf.read(sounds[1], dtype="float32")
    path = tmp_path / "cut.wav"
    sf.write(path, samples, rate)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    loaded = aisfx.load(path)
    assert len(loaded.notes) == 1 and loaded.notes[0].startswith("truncated file")
    assert np.isfinite(aisfx.encode_loaded([loaded])["embedding"]).all()


def test_long_clips_are_capped(sounds: list[Path]) -> None:
    samples, notes = read_audio(sounds[1], SAMPLE_RATE, max_seconds=0.1)
    assert len(samples) == pytest.approx(0.1 * SAMPLE_RATE, abs=2)
    assert notes == ["longer than 0.1 s: used the first 0.1 s"]
