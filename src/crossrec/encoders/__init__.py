"""Pretrained encoders for item text, images and audio, with verified weights and a resumable cache."""

from crossrec.encoders.base import MAIN_OUTPUT, BadInput, Encoder, Loaded
from crossrec.encoders.build import EncodeResult, encode_dataset
from crossrec.encoders.cache import EmbeddingCache
from crossrec.encoders.ingest import IngestIssue, IngestReport
from crossrec.encoders.modalities import (
    AudioEncoderConfig,
    EncodersConfig,
    ImageEncoderConfig,
    TextEncoderConfig,
    build_encoder,
    parse_config,
)
from crossrec.encoders.registry import REGISTRY, ModelFileError, ModelSpec, ResolvedModel, resolve

__all__ = [
    "MAIN_OUTPUT",
    "REGISTRY",
    "AudioEncoderConfig",
    "BadInput",
    "EmbeddingCache",
    "EncodeResult",
    "Encoder",
    "EncodersConfig",
    "ImageEncoderConfig",
    "IngestIssue",
    "IngestReport",
    "Loaded",
    "ModelFileError",
    "ModelSpec",
    "ResolvedModel",
    "TextEncoderConfig",
    "build_encoder",
    "encode_dataset",
    "parse_config",
    "resolve",
]
