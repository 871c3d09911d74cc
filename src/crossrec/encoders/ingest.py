"""The ingest report: what happened to every item that did not simply encode.

Bad raw input never stops a run and is never dropped silently: each skipped item (its row stays zero
in the output) and each repaired one (converted colour mode, truncated audio used as far as it goes)
is listed with its item, its source and the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from crossrec.io import write_json_atomic

Action = Literal["skipped", "repaired"]


@dataclass(frozen=True)
class IngestIssue:
    modality: str
    item: int  # dense item index
    item_id: str
    source: str  # file path, or the text fields used
    action: Action
    reason: str


@dataclass
class ModalityCounts:
    """Per modality: items asked for, with no input at all, encoded now, served from cache, skipped."""

    items: int = 0
    absent: int = 0
    encoded: int = 0
    cached: int = 0
    skipped: int = 0
    repaired: int = 0


@dataclass
class IngestReport:
    issues: list[IngestIssue] = field(default_factory=list)
    counts: dict[str, ModalityCounts] = field(default_factory=dict)
    not_in_dataset: list[str] = field(default_factory=list)  # configured modalities the data lacks

    def add(self, issue: IngestIssue) -> None:
        self.issues.append(issue)
        counts = self.counts.setdefault(issue.modality, ModalityCounts())
        if issue.action == "skipped":
            counts.skipped += 1
        else:
            counts.repaired += 1

    def skipped(self, modality: str | None = None) -> list[IngestIssue]:
        return [i for i in self.issues if i.action == "skipped" and modality in (None, i.modality)]

    def repaired(self, modality: str | None = None) -> list[IngestIssue]:
        return [i for i in self.issues if i.action == "repaired" and modality in (None, i.modality)]

    def to_dict(self) -> dict[str, object]:
        return {
            "counts": {name: asdict(c) for name, c in self.counts.items()},
            "not_in_dataset": self.not_in_dataset,
            "issues": [asdict(i) for i in self.issues],
        }

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        """One line per modality, for logs and the CLI."""
        lines = []
        for name, c in self.counts.items():
            lines.append(
                f"{name}: {c.items} items, {c.encoded} encoded, {c.cached} from cache, {c.absent} without "
                f"input, {c.skipped} skipped, {c.repaired} repaired"
            )
        lines += [f"{name}: configured but the dataset has none" for name in self.not_in_dataset]
        return "\n".join(lines)
