"""Early stopping, shared by every loop that trains against held-out data (the recommenders'
trainer, the shared-space heads, LoRA tuning of the text encoder): one rule for when to stop and
which state to keep."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

S = TypeVar("S")


class EarlyStopping(Generic[S]):
    """Track the best validation score; stop after `patience` evaluations without improving it.

    `update(score, step, snapshot)` calls `snapshot()` only when the score improves, so the state
    of the best step is copied once per improvement rather than after every evaluation.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.best_score = -math.inf
        self.best_step: int | None = None
        self.best_state: S | None = None
        self.bad_evaluations = 0

    def update(self, score: float, step: int, snapshot: Callable[[], S] | None = None) -> bool:
        """Record one evaluation; True when it is the best so far. NaN never counts as better."""
        if score > self.best_score:
            self.best_score, self.best_step, self.bad_evaluations = score, step, 0
            if snapshot is not None:
                self.best_state = snapshot()
            return True
        self.bad_evaluations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evaluations >= self.patience
