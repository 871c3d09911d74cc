"""Data stage: the typed dataset model, loaders for each source format, and splits."""

from crossrec.data.loaders import load_dataset
from crossrec.data.schema import Dataset, Interactions, ItemContent, Split
from crossrec.data.splits import cold_item_split, make_split, random_split, temporal_split

__all__ = [
    "Dataset",
    "Interactions",
    "ItemContent",
    "Split",
    "cold_item_split",
    "load_dataset",
    "make_split",
    "random_split",
    "temporal_split",
]
