"""Align stage: one shared space for text, images and audio, so any modality can find any other."""

from crossrec.align.bridge import LabelBridge
from crossrec.align.heads import SharedSpace
from crossrec.align.retrieval import paired_recall, precision_at_k

__all__ = ["LabelBridge", "SharedSpace", "paired_recall", "precision_at_k"]
