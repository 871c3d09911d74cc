"""Executors run a run's units. The runner hands each batch of independent units to the executor it
was given and records results as they come back; the local executor runs them one after another in
this process. Another executor (a process pool, Ray) only needs the same `map`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from crossrec.errors import ConfigError
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


class RayExecutor:
    """Units as Ray tasks on a cluster: a task whose worker process dies is retried by Ray
    (`max_retries`), and results come back as they finish, so the runner records each unit once.

    `address` is a running cluster's ("127.0.0.2:6379", "ray://...", "auto"); None starts a local
    one in this process. The run context goes to the object store once and every unit reads it
    from there. Each unit trains with the run's `threads` (as the local executor does), so the same
    seeds give the same numbers.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        max_retries: int = 3,
        cpus_per_unit: float = 1.0,
        init: dict[str, Any] | None = None,
    ) -> None:
        self.address, self.max_retries, self.cpus_per_unit = address, max_retries, cpus_per_unit
        self.init = dict(init or {})

    def map(
        self, fn: Callable[[RunContext, U], R], ctx: RunContext, units: Sequence[U]
    ) -> Iterator[tuple[U, R]]:
        if not units:
            return
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, logging_level="ERROR", **self.init)
        task = ray.remote(num_cpus=self.cpus_per_unit, max_retries=self.max_retries)(_run_unit)
        shared = ray.put(ctx)
        pending = {task.remote(fn, shared, unit): unit for unit in units}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(ref), ray.get(ref)


def _run_unit(fn: Callable[[RunContext, U], R], ctx: RunContext, unit: U) -> R:
    import torch

    if ctx.config.threads:
        torch.set_num_threads(ctx.config.threads)
    return fn(ctx, unit)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'crossrec[ray]' (docs/scale.md)") from None
    return ray
