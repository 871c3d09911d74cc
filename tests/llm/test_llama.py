"""The local backend on the real SmolLM2 GGUF, and the HTTP backend against llama-cpp-python's own
server on loopback. llama-cpp-python is an optional extra (docs/llm.md): without it these skip."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from crossrec.encoders.registry import resolve  # noqa: E402
from crossrec.llm.backends import SMOLLM2, LlamaCppBackend, OpenAIBackend  # noqa: E402
from crossrec.llm.base import Guarded, LLMTimeout, Request  # noqa: E402

pytestmark = pytest.mark.slow
SCHEMA = {
    "type": "object",
    "properties": {"genre": {"type": "string", "enum": ["Horror", "Comedy", "Drama"]}},
    "required": ["genre"],
}


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppBackend:
    return LlamaCppBackend()


def test_the_pinned_gguf_is_verified_and_answers_in_the_schema(smollm2):
    assert resolve(SMOLLM2.name).weights.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = Guarded(smollm2, lambda r: "{}").generate(
        Request("Which genre is 'Alien (1979)': Horror, Comedy or Drama?", max_tokens=24, schema=SCHEMA)
    )
    assert out.source == "llm" and out.data["genre"] in {"Horror", "Comedy", "Drama"}


def test_the_token_budget_and_the_deadline_hold(smollm2):
    short = smollm2._llama.tokenize(smollm2.complete(Request("Tell a long story.", max_tokens=8)).encode())
    assert len(short) <= 9
    with pytest.raises(LLMTimeout):
        smollm2.complete(Request("Tell a long story.", max_tokens=400, timeout_s=0.05))


def test_the_http_backend_against_llama_cpp_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = resolve(SMOLLM2.name).weights
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1"
        backend = OpenAIBackend(url, "smollm2", api_key_env=None, schema_format="json_object")
        out = Guarded(backend, lambda r: "{}").generate(
            Request(
                "Which genre is 'Airplane! (1980)': Horror, Comedy or Drama?", max_tokens=24, schema=SCHEMA
            )
        )
        assert out.source == "llm", out.reason
        assert out.data["genre"] in {"Horror", "Comedy", "Drama"}
    finally:
        server.kill()
        server.wait()
