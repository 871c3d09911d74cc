"""The LLM contract and what wraps every backend: a durable cache by prompt hash and a template
fallback.

`generate(request)` returns a `Generation` whose `source` says who wrote it: the model ("llm"), the
cache ("cache"), or the fallback template ("template", with the reason). Backends raise on failure;
`Guarded` turns a failure or a timeout into the template's text, so callers always get an answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossrec.errors import ConfigError


@dataclass(frozen=True)
class Request:
    """What to generate: a prompt (system + user), a token budget, a deadline, and optionally a JSON
    schema the answer must match (backends decode under it: the output is always parseable)."""

    prompt: str
    system: str | None = None
    max_tokens: int = 128
    timeout_s: float = 30.0
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    # Worked examples as (user, assistant) turns before the prompt: a small model follows a shown
    # answer far better than a described one.
    examples: tuple[tuple[str, str], ...] = ()
    # OpenAI's penalties on tokens already written: without them a small greedy model loops.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ConfigError("an LLM request needs a prompt")
        if self.max_tokens < 1 or self.timeout_s <= 0:
            raise ConfigError(
                f"max_tokens must be >= 1 and timeout_s > 0, got {self.max_tokens}, {self.timeout_s}"
            )

    def key(self, backend: str) -> str:
        """A stable hash of everything that shapes the answer, for the cache."""
        payload = {
            "backend": backend,
            "prompt": self.prompt,
            "system": self.system,
            "max_tokens": self.max_tokens,
            "schema": self.schema,
            "temperature": self.temperature,
            "examples": [list(e) for e in self.examples],
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Generation:
    text: str
    source: Literal["llm", "cache", "template"]
    seconds: float = 0.0
    reason: str | None = None  # why the template was used
    data: Any = field(default=None, compare=False)  # the parsed JSON when the request had a schema


class LLM(ABC):
    """A backend: `name` identifies the model (cache keys), `complete` returns the raw text."""

    name: str

    @abstractmethod
    def complete(self, request: Request) -> str:
        """The model's answer within the request's budget; raise on failure or past the deadline."""


class LLMTimeout(TimeoutError):
    pass


class GenerationCache:
    """Answers by request hash in SQLite (WAL): a second identical request costs nothing, across
    restarts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT text FROM generations WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, text: str) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO generations (key, text) VALUES (?, ?)", (key, text))


class Guarded:
    """A backend behind the cache and the template fallback: `generate` never raises for a model
    failure, a timeout or unparseable JSON; it answers with `template(request)` and says why."""

    def __init__(
        self,
        llm: LLM | None,
        template: Callable[[Request], str],
        cache: GenerationCache | None = None,
    ) -> None:
        self.llm, self.template, self.cache = llm, template, cache

    def lookup(self, request: Request) -> Generation | None:
        """The cached answer to `request` without asking the model, or None (no model, no cache, not
        cached yet, or a cached text that is not the JSON a schema request needs)."""
        if self.llm is None or self.cache is None:
            return None
        start = time.perf_counter()
        cached = self.cache.get(request.key(self.llm.name))
        if cached is None:
            return None
        try:
            data = _parsed(request, cached)
        except ValueError:
            return None
        return Generation(cached, "cache", time.perf_counter() - start, data=data)

    def generate(self, request: Request) -> Generation:
        start = time.perf_counter()
        if self.llm is None:
            return self._fallback(request, "no language model configured", start)
        key = request.key(self.llm.name)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            return Generation(cached, "cache", time.perf_counter() - start, data=_parsed(request, cached))
        try:
            text = self.llm.complete(request)
            data = _parsed(request, text)
        except Exception as exc:  # a model failure is never an error page: the template answers
            return self._fallback(request, f"{type(exc).__name__}: {exc}", start)
        if self.cache is not None:
            self.cache.put(key, text)
        return Generation(text, "llm", time.perf_counter() - start, data=data)

    def _fallback(self, request: Request, reason: str, start: float) -> Generation:
        text = self.template(request)
        return Generation(
            text, "template", time.perf_counter() - start, reason, _parsed(request, text, strict=False)
        )


def _parsed(request: Request, text: str, *, strict: bool = True) -> Any:
    """The JSON of a schema request (ValueError when it is not JSON, so the template answers)."""
    if request.schema is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if strict:
            raise ValueError(f"the answer is not JSON: {exc}") from None
        return None
