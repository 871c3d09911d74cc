"""Executors run a run's units. The runner hands each batch of independent units to the executor it
was given and records results as they come back; the local executor runs them one after another in
this process. Another executor (a process pool, Ray) only needs the same `map`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from crossrec.experiment.units import RunContext

U = TypeVar("U")
R = TypeVar("R")


class Executor(Protocol):
    def map(
        self, fn: Callable[[RunContext, U], R], ctx: RunContext, units: Sequence[U]
    ) -> Iterator[tuple[U, R]]:
        """(unit, fn(ctx, unit)) for every unit, in any order, each as soon as it is done."""
        ...


class LocalExecutor:
    """Sequential, in this process: the default, and the reference other executors must match."""

    def map(
        self, fn: Callable[[RunContext, U], R], ctx: RunContext, units: Sequence[U]
    ) -> Iterator[tuple[U, R]]:
        for unit in units:
            yield unit, fn(ctx, unit)
