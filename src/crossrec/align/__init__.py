"""Align stage: one shared space for text, images and audio, so any modality can find any other, and a
LoRA-tuned text encoder whose vectors follow what users consume together."""

from crossrec.align.bridge import LabelBridge, imagenet_label_names
from crossrec.align.heads import SharedSpace
from crossrec.align.lora import ItemPairs, LoraTextTuner, co_interaction_pairs
from crossrec.align.retrieval import paired_recall, precision_at_k

__all__ = [
    "ItemPairs",
    "LabelBridge",
    "LoraTextTuner",
    "SharedSpace",
    "co_interaction_pairs",
    "imagenet_label_names",
    "paired_recall",
    "precision_at_k",
]
