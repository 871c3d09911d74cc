"""The contract around every backend: the durable cache, the template fallback, real HTTP."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crossrec.errors import ConfigError
from crossrec.llm.backends import OpenAIBackend
from crossrec.llm.base import LLM, GenerationCache, Guarded, LLMTimeout, Request

SCHEMA = {"type": "object", "properties": {"fact": {"type": "integer"}}, "required": ["fact"]}


class Scripted(LLM):
    """A backend that answers from a script (or raises), counting its calls."""

    def __init__(self, *answers: str | Exception) -> None:
        self.name, self.answers, self.calls = "scripted", list(answers), 0

    def complete(self, request: Request) -> str:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _template(request: Request) -> str:
    return '{"fact": 0}' if request.schema else "a template sentence"


def test_failures_timeouts_and_bad_json_fall_back_to_the_template_with_the_reason():
    guarded = Guarded(Scripted(RuntimeError("model exploded"), LLMTimeout("past 1 s"), "not json"), _template)
    first = guarded.generate(Request("explain"))
    assert (first.source, first.text) == (
        "template",
        "a template sentence",
    ) and "model exploded" in first.reason
    assert "past 1 s" in guarded.generate(Request("explain")).reason
    bad = guarded.generate(Request("explain", schema=SCHEMA))
    assert bad.source == "template" and "not JSON" in bad.reason and bad.data == {"fact": 0}
    assert Guarded(None, _template).generate(Request("x")).reason == "no language model configured"


def test_answers_are_cached_durably_by_request(tmp_path):
    backend = Scripted('{"fact": 3}', '{"fact": 4}')
    guarded = Guarded(backend, _template, GenerationCache(tmp_path / "llm.sqlite"))
    first = guarded.generate(Request("which fact?", schema=SCHEMA))
    assert (first.source, first.data) == ("llm", {"fact": 3})
    reopened = Guarded(backend, _template, GenerationCache(tmp_path / "llm.sqlite"))
    again = reopened.generate(Request("which fact?", schema=SCHEMA))
    assert (again.source, again.data, backend.calls) == ("cache", {"fact": 3}, 1)
    other = reopened.generate(Request("which fact?", schema=SCHEMA, max_tokens=64))  # another request
    assert other.data == {"fact": 4} and backend.calls == 2


def test_the_cache_key_covers_examples_and_penalties():
    base = Request("q", system="s")
    keys = {
        r.key("m")
        for r in (base, replace(base, examples=(("eg", "a"),)), replace(base, presence_penalty=1.0),
                  replace(base, frequency_penalty=1.0))
    }  # fmt: skip
    assert len(keys) == 4 and base.key("m") == Request("q", system="s").key("m")


def test_requests_are_checked():
    with pytest.raises(ConfigError, match="needs a prompt"):
        Request("")
    with pytest.raises(ConfigError, match="max_tokens must be >= 1"):
        Request("x", max_tokens=0)


class _ChatServer(BaseHTTPRequestHandler):
    """A loopback OpenAI-compatible endpoint that records requests and can stall."""

    seen: list[dict] = []  # noqa: RUF012
    delay = 0.0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        time.sleep(type(self).delay)
        answer = json.dumps({"choices": [{"message": {"content": '{"fact": 7}'}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def test_the_http_backend_speaks_openai_chat_completions(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CROSSREC_TEST_KEY", "sk-test")
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        backend = OpenAIBackend(url, "some-model", api_key_env="CROSSREC_TEST_KEY")
        out = Guarded(backend, _template).generate(
            Request("hi", system="be brief", max_tokens=9, schema=SCHEMA)
        )
        assert (out.source, out.data) == ("llm", {"fact": 7})
        sent = _ChatServer.seen[-1]
        assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
        assert sent["max_tokens"] == 9 and sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
        # worked examples go before the prompt as turns; the penalties pass through
        Guarded(backend, _template).generate(
            Request("q", system="s", examples=(("eg", "answer"),), presence_penalty=0.5)
        )
        sent = _ChatServer.seen[-1]
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
        assert [m["content"] for m in sent["messages"][1:]] == ["eg", "answer", "q"]
        assert sent["presence_penalty"] == 0.5 and sent["frequency_penalty"] == 0.0
        _ChatServer.delay = 1.0
        slow = Guarded(backend, _template).generate(Request("hi", timeout_s=0.2))
        assert slow.source == "template" and "deadline" in slow.reason
    finally:
        _ChatServer.delay = 0.0
        server.shutdown()
