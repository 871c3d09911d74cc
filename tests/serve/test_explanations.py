"""Explanations through the API: opt-in, generated off the request path behind a bounded queue (a
full queue or a passed wait answers with the template at once; the job still lands in the cache), a
failing model never a 5xx; and `crossrec explain` on the command line."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crossrec.cli import app as cli
from crossrec.errors import ConfigError
from crossrec.llm.base import LLM, GenerationCache, Request
from crossrec.llm.explain import Explainer, Vocabulary
from crossrec.serve.app import create_app
from crossrec.serve.explanations import build_explainer
from crossrec.serve.facts import recommendation_facts
from crossrec.serve.state import ServingState

pytestmark = pytest.mark.slow
FACT_ID = re.compile(r"\[([A-Z]\d?)\]")


class Slow(LLM):
    """Answers with a sentence citing the first fact of the prompt, after sleeping until `release`
    is set (or `delay` seconds have passed)."""

    def __init__(self, delay: float = 30.0) -> None:
        self.name, self.delay = "slow-fake", delay
        self.release, self.calls = threading.Event(), 0

    def complete(self, request: Request) -> str:
        self.calls += 1
        self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # the worker's
        self.release.wait(self.delay)
        first = FACT_ID.findall(request.prompt.rsplit("Facts:", 1)[1])[0]
        return json.dumps({"text": f"fans of [{first}] should like this one."})


class Failing(LLM):
    name = "failing-fake"

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer

    def complete(self, request: Request) -> str:
        if self.answer is None:
            raise RuntimeError("the model fell over")
        return self.answer


@pytest.fixture(scope="module")
def state(bundle) -> ServingState:
    return ServingState(bundle, exact_below=1000)  # read only here: one for the module


def _explainer(state: ServingState, llm: LLM | None, tmp_path) -> Explainer:
    cache = GenerationCache(tmp_path / "explanations.sqlite") if llm is not None else None
    return Explainer(llm, Vocabulary.from_items(state.items), cache, noun="film")


def _user_and_items(state: ServingState, n: int) -> tuple[str, list[str]]:
    """A user and `n` of their recommendations that each have facts to cite (so the model is asked)."""
    explainer = Explainer(None, noun="film")
    for user in state.user_ids:
        items = [state.item_ids[i] for i, _ in state.recommend(user, 20)]
        cited = [i for i in items if explainer.ready(recommendation_facts(state, user, i)).cites]
        if len(cited) >= n:
            return user, cited[:n]
    raise AssertionError("no user with enough explainable recommendations")


def test_explanations_are_opt_in_and_the_template_explains_by_default(state):
    client = TestClient(create_app(state, api_key=None))
    user = state.user_ids[0]
    plain = client.get(f"/users/{user}/recommendations", params={"k": 5}).json()["items"]
    assert len(plain) == 5 and not any("explanation" in item for item in plain)
    assert set(plain[0]) == {"item_id", "score", "title", "image"}
    explained = client.get(f"/users/{user}/recommendations", params={"k": 5, "explain": True}).json()["items"]
    assert [i["item_id"] for i in explained] == [i["item_id"] for i in plain]
    for item in explained:
        said = item["explanation"]
        assert said["source"] == "template" and said["reason"] == "no language model configured"
        assert said["text"] and set(said) == {"text", "source", "cites", "reason"}

    item = plain[0]["item_id"]
    got = client.get(f"/users/{user}/recommendations/{item}/explanation")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["facts"] == client.get(f"/users/{user}/recommendations/{item}/facts").json()
    assert body["explanation"] == explained[0]["explanation"]
    for liked in body["explanation"]["cites"]:
        assert liked in {"G1", "G2", "T1", "T2", "L1", "L2", "L3", "P"}
    assert client.get(f"/users/nobody/recommendations/{item}/explanation").status_code == 404
    assert client.get(f"/users/{user}/recommendations/nope/explanation").status_code == 404
    wait = client.get(f"/users/{user}/recommendations/{item}/explanation", params={"explain_wait_s": -1})
    assert wait.status_code == 422
    app = client.app
    app.state.explanations.close()


def test_a_full_queue_and_a_passed_wait_answer_with_the_template_at_once(state, tmp_path):
    llm = Slow()
    app = create_app(
        state, api_key=None, explainer=_explainer(state, llm, tmp_path), explain_queue=1, explain_wait_s=2
    )
    client = TestClient(app)
    service = app.state.explanations
    user, (a, b, c) = _user_and_items(state, 3)

    def ask(item: str, **params) -> tuple[dict, float]:
        started = time.perf_counter()
        got = client.get(f"/users/{user}/recommendations/{item}/explanation", params=params)
        assert got.status_code == 200, got.text
        return got.json()["explanation"], time.perf_counter() - started

    said, took = ask(a)  # the worker takes it at once and sleeps in the model: the wait passes
    assert (said["source"], said["reason"]) == ("template", "still generating") and 1.9 < took < 10
    deadline = time.monotonic() + 10
    while service.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    said, _ = ask(b, explain_wait_s=0)  # queued behind a: the queue (size 1) is full now
    assert said["reason"] == "still generating" and service.depth == 1
    said, took = ask(c)  # no room: the template at once, not after the 2 s wait
    assert (said["source"], said["reason"]) == ("template", "queue full") and took < 1.5
    said, _ = ask(a, explain_wait_s=0)  # a is in progress: the request waits on the same job
    assert said["reason"] == "still generating" and service.depth == 1
    assert said["text"] and said["cites"]  # the template sentence, from the same facts

    llm.release.set()
    assert service.drain(30)
    for item in (a, b):  # both jobs finished after their requests had gone and landed in the cache
        said, took = ask(item, explain_wait_s=0)
        assert said["source"] == "cache" and said["reason"] is None and said["text"].startswith("Fans of ")
    assert llm.calls == 2
    assert llm.nice == min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)  # below the requests' priority
    said, _ = ask(c, explain_wait_s=10)  # room again: c is generated within its wait
    assert said["source"] == "llm" and llm.calls == 3
    metrics = client.get("/metrics").text
    assert 'crossrec_explanations_total{reason="queue_full",source="template"} 1.0' in metrics
    assert 'crossrec_explanations_total{reason="still_generating",source="template"} 3.0' in metrics
    assert 'crossrec_explanations_total{reason="",source="cache"} 2.0' in metrics
    assert "crossrec_explanation_queue_depth 0.0" in metrics
    assert 'crossrec_explanation_generation_seconds_count{source="llm"} 3.0' in metrics

    listed = client.get(
        f"/users/{user}/recommendations", params={"k": 20, "explain": True, "explain_wait_s": 0}
    )
    sources = {i["item_id"]: i["explanation"]["source"] for i in listed.json()["items"]}
    assert {sources[a], sources[b], sources[c]} == {"cache"}
    assert "queue full" in {i["explanation"]["reason"] for i in listed.json()["items"]}
    service.close()
    assert service._worker is not None and not service._worker.is_alive()


@pytest.mark.parametrize("answer", [None, "not json", json.dumps({"text": "a [Q9] pick."}), json.dumps([1])])
def test_a_failing_model_is_a_template_explanation_never_a_5xx(state, tmp_path, answer):
    app = create_app(
        state, api_key=None, explainer=_explainer(state, Failing(answer), tmp_path), explain_wait_s=10
    )
    client = TestClient(app)
    user, (item,) = _user_and_items(state, 1)
    got = client.get(f"/users/{user}/recommendations/{item}/explanation")
    assert got.status_code == 200, got.text
    said = got.json()["explanation"]
    assert said["source"] == "template" and said["reason"] and said["text"]
    listed = client.get(f"/users/{user}/recommendations", params={"k": 3, "explain": True})
    assert listed.status_code == 200 and all(
        i["explanation"]["source"] == "template" for i in listed.json()["items"]
    )
    app.state.explanations.close()


def test_the_explainer_options(state, tmp_path):
    assert build_explainer(state, "template").llm is None
    with pytest.raises(ConfigError, match="inside the bundle"):
        build_explainer(state, "smollm2", cache=state.bundle.path / "explanations.sqlite")
    with pytest.raises(ConfigError, match=r"template, smollm2 or a \.gguf"):
        build_explainer(state, "gpt")
    with pytest.raises(ConfigError, match="--llm-model"):
        build_explainer(state, url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match=r"not found|not installed"):
        build_explainer(state, str(tmp_path / "absent.gguf"))
    served = CliRunner().invoke(
        cli,
        ["serve", str(state.bundle.path), "--no-auth", "--store", str(tmp_path / "s.sqlite"), "--llm", "gpt"],
    )
    assert served.exit_code == 2 and "template, smollm2 or a .gguf" in served.output


def test_crossrec_explain_prints_the_facts_and_the_explanation(bundle_dir, state, tmp_path):
    user = state.user_ids[1]
    item = state.item_ids[state.recommend(user, 1)[0][0]]
    facts = recommendation_facts(state, user, item)
    log = ["--store", str(tmp_path / "serve.sqlite")]  # an empty log: the bundle's facts as trained
    got = CliRunner().invoke(
        cli, ["explain", str(bundle_dir.parent), "--user", user, "--item", item, "--llm", "template", *log]
    )
    assert got.exit_code == 0, got.output
    titles = [
        n["title"] for nearest in facts["nearest_liked"].values() for n in nearest if len(n["title"]) < 80
    ]
    assert titles and all(t in got.output for t in titles)
    assert f"#{facts['popularity']['rank']:,} of" in got.output
    assert "source: template (no language model configured)" in got.output
    missing = CliRunner().invoke(cli, ["explain", str(bundle_dir), "--user", user, "--item", "nope", *log])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_the_real_smollm2_explains_off_the_request_path(state, tmp_path):
    pytest.importorskip("llama_cpp")
    explainer = build_explainer(
        state, "smollm2", cache=tmp_path / "explanations.sqlite", threads=1, timeout_s=60
    )
    app = create_app(state, api_key=None, explainer=explainer, explain_wait_s=60)
    client = TestClient(app)
    user, (item,) = _user_and_items(state, 1)
    try:
        first = client.get(f"/users/{user}/recommendations/{item}/explanation").json()["explanation"]
        print(first)
        assert first["source"] == "llm" or first["reason"].startswith("check:")
        again = client.get(f"/users/{user}/recommendations/{item}/explanation").json()["explanation"]
        assert again["text"] == first["text"]
        assert again["source"] == ("cache" if first["source"] == "llm" else "template")
    finally:
        app.state.explanations.close()
