"""Explanations served beside recommendations, generated off the request path.

One worker thread owns the language model (a llama.cpp context runs one generation at a time) and
takes jobs from a bounded queue. A request is answered at once when its explanation needs no
generation (the template explainer, no facts to cite, or an answer already in the durable cache);
otherwise one job per distinct prompt is queued (a second request for the same pair waits on the
same job) and the request waits up to its wait. A full queue or a passed wait answers at once with
the template sentence, `source` "template" and the reason ("queue full", "still generating"); a
queued job still finishes and its answer lands in the cache, where the next request finds it. A
model failure is a template explanation with the reason, never an error page.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crossrec.errors import ConfigError
from crossrec.llm.base import LLM, GenerationCache
from crossrec.llm.explain import Explainer, Explanation, Vocabulary
from crossrec.serve.facts import recommendation_facts
from crossrec.serve.state import ServingState

QUEUE_FULL = "queue full"
STILL_GENERATING = "still generating"
ABOUT_FIELDS = ("overview", "description", "summary", "plot")  # an item's own text, as data
NOUNS = {"movielens": "film"}  # what an item is called in a sentence, by dataset format


@dataclass
class _Job:
    key: str
    facts: Mapping[str, Any]
    about: str | None
    done: threading.Event = field(default_factory=threading.Event)
    result: Explanation | None = None


class ExplanationService:
    """Explanations for (user, item) pairs of a live state; `explainer.llm` is used by one worker
    thread only. With a `registry`, Prometheus metrics: explanations served by source and reason,
    the queue's depth, the jobs queued or in progress, and generation seconds."""

    def __init__(
        self,
        state: ServingState,
        explainer: Explainer,
        *,
        queue_size: int = 16,
        wait_s: float = 3.0,
        registry: CollectorRegistry | None = None,
        nice: int = 10,
    ) -> None:
        """`nice`: how much lower the worker's CPU priority is than the server's (Linux: per thread),
        so that when the cores are contended the requests win and generation waits."""
        if queue_size < 1 or wait_s < 0:
            raise ConfigError(
                f"the explanation queue needs a size >= 1 and a wait >= 0, got {queue_size}, {wait_s}"
            )
        self.state, self.explainer, self.wait_s, self.nice = state, explainer, wait_s, nice
        self._queue: queue.Queue[_Job] = queue.Queue(queue_size)
        self._pending: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._served = Counter(
            "crossrec_explanations",
            "explanations served, by source (llm, cache, template) and why a template was sent",
            ["source", "reason"],
            registry=registry,
        )
        self._generated = Histogram(
            "crossrec_explanation_generation_seconds",
            "seconds the worker spent on one explanation, by the source it produced",
            ["source"],
            buckets=(0.1, 0.5, 1, 2, 4, 8, 15, 30, 60),
            registry=registry,
        )
        depth = Gauge(
            "crossrec_explanation_queue_depth", "explanations waiting to be generated", registry=registry
        )
        depth.set_function(self._queue.qsize)
        pending = Gauge(
            "crossrec_explanations_pending",
            "explanations queued or being generated",
            registry=registry,
        )
        pending.set_function(lambda: len(self._pending))

    @property
    def generates(self) -> bool:
        """Whether a language model writes the explanations (else the template does, at once)."""
        return self.explainer.llm is not None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # -- requests --------------------------------------------------------------------------------
    def explain(
        self, user_id: str, item_id: str, wait_s: float | None = None
    ) -> tuple[dict[str, Any], Explanation]:
        """The facts behind recommending `item_id` to `user_id` and their explanation (UnknownId for
        an unknown user or item)."""
        facts = recommendation_facts(self.state, user_id, item_id)
        return facts, self.answer([facts], wait_s)[0]

    def explain_many(
        self, user_id: str, item_ids: Sequence[str], wait_s: float | None = None
    ) -> list[Explanation]:
        """One explanation per item, all queued first and waited for together (one deadline)."""
        return self.answer([recommendation_facts(self.state, user_id, i) for i in item_ids], wait_s)

    def answer(self, facts: Sequence[Mapping[str, Any]], wait_s: float | None = None) -> list[Explanation]:
        """Explanations of `recommendation_facts` records, within `wait_s` (default: the service's)."""
        deadline = time.monotonic() + (self.wait_s if wait_s is None else max(wait_s, 0.0))
        entries = [self._ready_or_queued(one) for one in facts]
        out: list[Explanation] = []
        for one, entry in zip(facts, entries, strict=True):
            if isinstance(entry, _Job):
                if entry.done.wait(max(deadline - time.monotonic(), 0.0)) and entry.result is not None:
                    entry = entry.result
                else:
                    entry = self.explainer.template(one, STILL_GENERATING)
            out.append(entry)
            self._served.labels(entry.source, _reason_label(entry.reason)).inc()
        return out

    def _ready_or_queued(self, facts: Mapping[str, Any]) -> Explanation | _Job:
        about = item_about(self.state, str(facts["item_id"]))
        try:
            ready = self.explainer.ready(facts, about)
        except Exception as exc:  # the cache unreadable, say: the template answers, never a 5xx
            return self.explainer.template(facts, f"{type(exc).__name__}: {exc}")
        if ready is not None:
            return ready
        key = self.explainer.key(facts, about)
        with self._lock:
            job = self._pending.get(key)
            if job is not None:
                return job
            job = _Job(key, facts, about)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                return self.explainer.template(facts, QUEUE_FULL)
            self._pending[key] = job
            if self._worker is None and not self._stop.is_set():
                self._worker = threading.Thread(target=self._work, name="crossrec-explanations", daemon=True)
                self._worker.start()
        return job

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        if self.nice > 0 and hasattr(os, "setpriority"):
            with contextlib.suppress(OSError):  # this thread only (Linux); threads it starts inherit it
                base = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), base + self.nice)
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            started = time.perf_counter()
            try:
                result = self.explainer.explain(job.facts, job.about)
            except Exception as exc:  # a model failure is an explanation by the template, with why
                result = self.explainer.template(job.facts, f"{type(exc).__name__}: {exc}")
            self._generated.labels(result.source).observe(time.perf_counter() - started)
            job.result = result
            job.done.set()
            with self._lock:
                self._pending.pop(job.key, None)

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every queued job is done (tests, benchmarks); False if `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the worker (after the generation in progress) and free the model."""
        self._stop.set()
        worker = self._worker
        if worker is not None:
            worker.join(timeout_s)
            if worker.is_alive():
                return  # still inside the model: freeing it now could crash the process
        close = getattr(self.explainer.llm, "close", None)
        if callable(close):
            close()


def item_about(state: ServingState, item_id: str) -> str | None:
    """The item's own text (its overview), which a prompt quotes as data, or None."""
    index = state.item_index.get(item_id)
    row = state.items[index] if index is not None and index < len(state.items) else {}
    for name in ABOUT_FIELDS:
        if isinstance(row.get(name), str) and row[name].strip():
            return str(row[name])
    return None


def _reason_label(reason: str | None) -> str:
    """A bounded label for why a template was sent (the reason itself can name any exception)."""
    if reason is None:
        return ""
    if reason in (QUEUE_FULL, STILL_GENERATING):
        return reason.replace(" ", "_")
    if reason == "no language model configured":
        return "no_model"
    if reason == "no facts to cite":
        return "no_facts"
    if reason.startswith("check:"):
        return "check"
    return "model_error"


def noun_for(state: ServingState) -> str:
    """What the served items are called in a sentence ("film" for movielens, else "item")."""
    return NOUNS.get(state.bundle.config.dataset.format, "item")


def template_explainer(state: ServingState) -> Explainer:
    """The template baseline: no model, the catalogue's vocabulary."""
    return Explainer(None, Vocabulary.from_items(state.items), noun=noun_for(state))


def build_explainer(
    state: ServingState,
    llm: str = "template",
    *,
    url: str | None = None,
    model: str | None = None,
    key_env: str | None = "OPENAI_API_KEY",
    schema_format: str = "json_schema",
    cache: str | Path | None = None,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> Explainer:
    """The explainer `crossrec serve` and `crossrec explain` choose by their options: `llm` is
    "template", "smollm2" (the pinned GGUF) or the path of a .gguf file; `url` and `model` choose an
    OpenAI-compatible endpoint instead (its key read from `key_env`). `cache` is the durable cache of
    answers; it may not lie inside the bundle, whose files are checksummed."""
    if cache is not None and Path(cache).resolve().is_relative_to(Path(state.bundle.path).resolve()):
        raise ConfigError(
            f"the explanation cache {cache} may not lie inside the bundle (its files are checksummed)"
        )
    backend: LLM | None
    if url is not None:
        from crossrec.llm.backends import OpenAIBackend

        if not model:
            raise ConfigError("--llm-url needs --llm-model: the model name the endpoint serves")
        if schema_format not in ("json_schema", "json_object"):
            raise ConfigError(f"schema format must be json_schema or json_object, got {schema_format!r}")
        backend = OpenAIBackend(url, model, api_key_env=key_env, schema_format=schema_format)  # type: ignore[arg-type]
    elif llm == "template":
        backend = None
    elif llm == "smollm2" or llm.endswith(".gguf"):
        from crossrec.llm.backends import LlamaCppBackend

        if threads < 1:
            raise ConfigError(f"the model needs at least one thread, got {threads}")
        backend = LlamaCppBackend(None if llm == "smollm2" else Path(llm), threads=threads)
    else:
        raise ConfigError(f"--llm must be template, smollm2 or a .gguf file, got {llm!r}")
    store = GenerationCache(cache) if backend is not None and cache is not None else None
    vocabulary = Vocabulary.from_items(state.items)
    return Explainer(backend, vocabulary, store, noun=noun_for(state), timeout_s=timeout_s)
