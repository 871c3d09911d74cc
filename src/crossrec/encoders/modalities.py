"""Which encoder runs on which modality: the per-modality configs (`encode.models`), one
registration per modality (`MODALITIES`: its config class, how a dataset provides its inputs, how its
encoder is built), and the encoder classes by weights name (`ENCODERS`). Adding a modality is one
`MODALITIES.register(...)`; `encoders/build.py` encodes whatever is registered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crossrec.data.schema import ItemContent
from crossrec.encoders.audio import AisfxEncoder
from crossrec.encoders.base import Encoder
from crossrec.encoders.fast import Backend, Precision, check_path
from crossrec.encoders.image import EfficientNetLiteEncoder
from crossrec.encoders.registry import get_spec, resolve
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder, item_texts
from crossrec.errors import ConfigError
from crossrec.registry import Registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PathConfig(_Strict):
    """How the network runs. onnx fp32 is the default: the same vectors as torch (cosine 1.0 to 1e-6),
    2.8-5.6x the torch speed for images and 1.2-2.7x for audio, but a median 0.54x for MiniLM text on
    2 shared cores (docs/encoders.md); int8 (MiniLM only) trades cosine ~0.996 for speed. The backend is
    part of the encoder fingerprint, so switching it re-encodes rather than mixing vectors."""

    backend: Backend = "onnx"
    precision: Precision = "fp32"


class TextEncoderConfig(_PathConfig):
    model: str = "all-MiniLM-L6-v2"
    path: str | None = None  # explicit local weights: wins over the installed package
    fields: list[str] | None = None  # None: every text field of the dataset, in its order
    batch_size: int = Field(64, ge=1)
    adapter: str | None = None  # a LoRA adapter folder (align/lora.py trains it), MiniLM only


class ImageEncoderConfig(_PathConfig):
    model: str = "efficientnet-lite0"
    path: str | None = None
    batch_size: int = Field(16, ge=1)
    max_pixels: int | None = Field(None, ge=1)  # None: PIL's decompression-bomb limit
    labels: bool = True  # also return ImageNet label probabilities as "image_labels"


class AudioEncoderConfig(_PathConfig):
    model: str = "aisfx"
    path: str | None = None
    batch_size: int = Field(8, ge=1)
    pooling: Literal["mean", "max"] = "mean"
    max_seconds: float = Field(600.0, gt=0)


class EncodersConfig(BaseModel):
    """Which encoder runs on which modality; a modality set to null is not encoded. Besides text,
    image and audio, any modality registered in MODALITIES may be configured under its name."""

    model_config = ConfigDict(extra="allow")

    text: TextEncoderConfig | None = Field(default_factory=TextEncoderConfig)
    image: ImageEncoderConfig | None = Field(default_factory=ImageEncoderConfig)
    audio: AudioEncoderConfig | None = Field(default_factory=AudioEncoderConfig)
    allow_download: bool = False  # fall back to the hub when neither a path nor the package has weights

    @model_validator(mode="after")
    def _registered_modalities(self) -> Self:
        """An extra key must name a registered modality; its value is validated by that modality's
        config class (so a typo fails at load time, naming what is registered)."""
        for name, raw in list((self.__pydantic_extra__ or {}).items()):
            if name not in MODALITIES:
                raise ValueError(f"no modality '{name}' is registered; registered: {', '.join(MODALITIES)}")
            spec = MODALITIES[name]
            self.__pydantic_extra__[name] = None if raw is None else spec.config.model_validate(raw)
        return self

    def modality_config(self, name: str) -> BaseModel | None:
        """The config of modality `name` (None when it is switched off or not configured)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return (self.__pydantic_extra__ or {}).get(name)


ModalityConfig = TextEncoderConfig | ImageEncoderConfig | AudioEncoderConfig

# Encoder classes by the registry name of the weights they run (encoders/registry.py pins the files).
ENCODERS: Registry[type[Encoder]] = Registry("encoder")
ENCODERS.register("all-MiniLM-L6-v2", MiniLMEncoder)
ENCODERS.register("wordllama-l2-supercat-256", WordLlamaEncoder)
ENCODERS.register("efficientnet-lite0", EfficientNetLiteEncoder)
ENCODERS.register("aisfx", AisfxEncoder)


def parse_config(config: EncodersConfig | Mapping[str, Any] | None) -> EncodersConfig:
    if isinstance(config, EncodersConfig):
        return config
    try:
        return EncodersConfig.model_validate(dict(config or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid encoders config: {exc}") from exc


def build_encoder(
    modality: str,
    config: BaseModel,
    *,
    allow_download: bool = False,
    artifact_dir: str | Path | None = None,
) -> Encoder:
    """The encoder a modality's config names, with weights resolved and verified (see the modality's
    registration in MODALITIES)."""
    return MODALITIES[modality].build(config, allow_download=allow_download, artifact_dir=artifact_dir)


def _pretrained(
    modality: str, config: ModalityConfig, *, allow_download: bool, artifact_dir: str | Path | None
) -> Encoder:
    """The shipped encoders: weights from the registry; an onnx backend's graph is exported into
    `artifact_dir` (default: fast.model_cache_dir()) on first use."""
    try:
        spec = get_spec(config.model)
    except Exception as exc:
        raise ConfigError(f"encoders.{modality}.model: {exc}") from exc
    cls = ENCODERS[spec.name]
    if cls.modality != modality:
        raise ConfigError(f"encoders.{modality}.model: {spec.name} encodes {cls.modality}, not {modality}")
    if getattr(config, "adapter", None) is not None and cls is not MiniLMEncoder:
        raise ConfigError(f"encoders.{modality}.adapter: LoRA adapters apply to MiniLM, not {spec.name}")
    if not cls.onnx_precisions:  # WordLlama: a numpy table lookup, no network for a backend to run
        if config.precision != "fp32":
            raise ConfigError(f"encoders.{modality}.precision: {spec.name} has no network to quantise")
        return cls(resolve(spec.name, config.path, allow_download=allow_download))  # type: ignore[call-arg]
    check_path(f"encoders.{modality} ({spec.name})", config.backend, config.precision, cls.onnx_precisions)
    model = resolve(spec.name, config.path, allow_download=allow_download)
    path = {"backend": config.backend, "precision": config.precision, "artifact_dir": artifact_dir}
    if isinstance(config, ImageEncoderConfig):
        return EfficientNetLiteEncoder(model, variant=spec.name, max_pixels=config.max_pixels, **path)
    if isinstance(config, AudioEncoderConfig):
        return AisfxEncoder(model, pooling=config.pooling, max_seconds=config.max_seconds, **path)
    return MiniLMEncoder(model, adapter=config.adapter, **path)


@dataclass(frozen=True)
class Modality:
    """A modality's one registration: its config class (under `encode.models.<name>`), how a
    dataset provides one raw input per item, and how its encoder is built. `kind` says whether inputs
    are texts (hashed by content) or file paths (hashed by the file's bytes)."""

    name: str
    config: type[BaseModel]
    inputs: Callable[[ItemContent, Any], list[str | None] | None]
    build: Callable[..., Encoder]
    kind: Literal["text", "file"] = "file"


MODALITIES: Registry[Modality] = Registry("modality")
MODALITIES.register(
    "text",
    Modality(
        "text",
        TextEncoderConfig,
        lambda content, cfg: item_texts(content, text_fields(content, cfg)) if content.text else None,
        lambda cfg, **kw: _pretrained("text", cfg, **kw),
        kind="text",
    ),
)
MODALITIES.register(
    "image",
    Modality(
        "image", ImageEncoderConfig, lambda c, cfg: c.image, lambda cfg, **kw: _pretrained("image", cfg, **kw)
    ),
)
MODALITIES.register(
    "audio",
    Modality(
        "audio", AudioEncoderConfig, lambda c, cfg: c.audio, lambda cfg, **kw: _pretrained("audio", cfg, **kw)
    ),
)


def text_fields(content: ItemContent, cfg: TextEncoderConfig) -> list[str]:
    """The text fields an item's text is built from: the configured ones, else all the dataset has."""
    return cfg.fields if cfg.fields is not None else list(content.text)
