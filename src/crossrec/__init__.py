"""crossrec: multimodal recommendation driven by pretrained models."""

__version__ = "0.1.0"
