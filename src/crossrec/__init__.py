"""crossrec: multimodal recommendation driven by pretrained models."""

__version__ = "0.1.0"


def load_bundle(path, model=None):  # type: ignore[no-untyped-def]
    """A run bundle ready to recommend (see crossrec.experiment.bundle.load_bundle)."""
    from crossrec.experiment.bundle import load_bundle as _load

    return _load(path, model)
