"""Align stage: one shared space for text, images and audio, so any modality can find any other."""

from crossrec.align.bridge import LabelBridge, imagenet_label_names
from crossrec.align.heads import SharedSpace
from crossrec.align.retrieval import paired_recall, precision_at_k

__all__ = ["LabelBridge", "SharedSpace", "imagenet_label_names", "paired_recall", "precision_at_k"]
