"""Encoding new content while serving, with the very encoders the bundle's features came from.

The bundle's config names each modality's encoder; it is rebuilt on first use and its fingerprint
must equal the `source` the bundle recorded for that feature, so a new item or a query lands in the
same space as the catalogue (a changed encoder is refused instead of mixing spaces). Inputs are
decoded by the encoders' own `load`, which rejects corrupt files, decompression bombs, silent or
malformed audio with a reason (`BadInput`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from crossrec.data.schema import ItemContent
from crossrec.encoders.base import MAIN_OUTPUT, Encoder
from crossrec.encoders.modalities import build_encoder
from crossrec.encoders.text import item_texts
from crossrec.errors import ConfigError
from crossrec.experiment.bundle import Bundle


class ContentEncoders:
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._encoders: dict[str, Encoder] = {}
        self._lock = threading.Lock()
        encode = bundle.config.encode
        self.configs = {}
        if encode is not None:
            for name in ("text", "image", "audio"):
                cfg = encode.models.modality_config(name)
                if cfg is not None and name in bundle.features:
                    self.configs[name] = cfg

    @property
    def modalities(self) -> list[str]:
        return list(self.configs)

    def encoder(self, modality: str) -> Encoder:
        if modality not in self.configs:
            raise ConfigError(
                f"the bundle has no {modality} encoder (it encoded: {', '.join(self.configs) or 'none'})"
            )
        with self._lock:
            if modality not in self._encoders:
                encoder = build_encoder(modality, self.configs[modality])
                recorded = self.bundle.features[modality].source
                if encoder.fingerprint != recorded:
                    raise ConfigError(
                        f"the {modality} encoder here ({encoder.fingerprint}) is not the one the bundle's "
                        f"features came from ({recorded}): install the same weights and settings"
                    )
                self._encoders[modality] = encoder
            return self._encoders[modality]

    def text_of(self, row: dict[str, Any]) -> str | None:
        """An item's text as the bundle built it: its configured fields, "field: value" joined."""
        cfg = self.configs["text"]
        fields = cfg.fields if cfg.fields is not None else [f for f in self._text_fields()]
        content = ItemContent(text={f: [row.get(f)] for f in fields})
        return item_texts(content, fields)[0]

    def _text_fields(self) -> list[str]:
        reserved = {"id", "image", "audio"}
        return [k for k in self.bundle.items[0] if k not in reserved] if self.bundle.items else []

    def encode(self, modality: str, raw: str | Path) -> dict[str, np.ndarray]:
        """Every output of one input (the embedding under the modality's name, extras as
        "<modality>_<output>"), float32 rows; BadInput when the input cannot be used."""
        encoder = self.encoder(modality)
        outputs = encoder.encode_loaded([encoder.load(str(raw))])
        return {
            (modality if name == MAIN_OUTPUT else f"{modality}_{name}"): np.asarray(m[0], dtype=np.float32)
            for name, m in outputs.items()
        }
