"""The web page: its endpoints through FastAPI's test client, then the page itself in a real headless
browser (Debian's chromium driven by Playwright for Python) against the app served by uvicorn.

Set CROSSREC_WEB_SCREENSHOT=docs/serve.png to write the screenshot shown in docs/serving.md."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from crossrec.llm.base import LLM, GenerationCache, Request
from crossrec.llm.explain import Explainer, Vocabulary
from crossrec.serve.app import create_app
from crossrec.serve.explanations import item_about, template_explainer
from crossrec.serve.facts import recommendation_facts
from crossrec.serve.state import ServingState

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("CROSSREC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "web-test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def state(bundle, shared_data: Path) -> ServingState:
    """Served with the posters of movielens-small named in its item table, as a bundle built with
    posters has them (the session's bundle was built without, to keep it small)."""
    state = ServingState(bundle, exact_below=1000)
    root = shared_data / "movielens-small"
    with open(root / "ml-latest-small" / "links.csv", newline="", encoding="utf-8") as fh:
        tmdb = {row["movieId"]: row["tmdbId"] for row in csv.DictReader(fh)}
    posters = {p.name for p in (root / "posters").iterdir()}
    state.items = [
        dict(row, image=str((root / "posters" / f"{tmdb[row['id']]}.jpg").resolve()))
        if f"{tmdb.get(row['id'])}.jpg" in posters
        else dict(row)
        for row in state.items
    ]
    return state


def test_the_page_its_files_example_users_and_posters(state):
    client = TestClient(create_app(state, api_key=KEY))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        got = client.get(f"/static/{name}")
        assert got.status_code == 200 and kind in got.headers["content-type"]
    assert client.get("/static/../page.py").status_code == 404
    users = client.get("/users", params={"limit": 3}).json()
    assert users == {"users": state.user_ids[:3], "total": len(state.user_ids)}
    assert client.get("/users", params={"limit": 0}).status_code == 422

    with_poster = next(i for i, row in enumerate(state.items) if row.get("image"))
    without = next(i for i, row in enumerate(state.items) if not row.get("image"))
    got = client.get(f"/items/{state.item_ids[with_poster]}/poster")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content.startswith(b"\xff\xd8\xff")
    assert client.get(f"/items/{state.item_ids[without]}/poster").status_code == 404
    assert "nope" in client.get("/items/nope/poster").json()["detail"]
    # only a path the item table names, and only an image file: a flag (items added while serving)
    # or another kind of file is no poster
    state.items[without] = dict(state.items[without], image=True)
    assert client.get(f"/items/{state.item_ids[without]}/poster").status_code == 404
    state.items[without] = dict(state.items[without], image=str(Path(__file__).resolve()))
    assert client.get(f"/items/{state.item_ids[without]}/poster").status_code == 404


@contextmanager
def _served(app) -> Iterator[str]:
    """The app under uvicorn in a background thread, on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.state.explanations.close()


@pytest.fixture
def server(state):
    with _served(create_app(state, api_key=KEY)) as url:
        yield url


@pytest.fixture
def browser(missing_input):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_input("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).is_file():
        missing_input(f"no chromium at {CHROMIUM} (apt-get install chromium, or set CROSSREC_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_the_page_in_a_real_browser(server, browser, state, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    expect(page.locator("#examples button")).to_have_count(8)
    expect(page.locator("#health")).to_contain_text(f"{len(state.item_ids):,} items")

    user = state.user_ids[0]
    page.fill("#user", user)
    page.click("#user-form button[type=submit]")
    results = page.locator("#results .result")
    expect(results).to_have_count(10)
    expect(page.locator("#results-heading")).to_have_text(f"Recommended for user {user}")
    ids = [results.nth(i).get_attribute("data-item-id") for i in range(10)]
    titles = page.locator("#results .result .title").all_inner_texts()
    assert titles == [state.items[state.item(i)]["title"] for i in ids]
    page.wait_for_function("[...document.images].every((img) => img.complete)")
    assert page.locator("#results img.poster").count() >= 5  # posters streamed by the app
    assert page.evaluate("[...document.images].every((img) => img.naturalWidth > 0)")

    first = results.first
    first.locator("[data-action=why]").click()
    expect(first.locator(".facts")).to_contain_text("Popularity: #")
    # the explanation sentence, and who wrote it, above the facts
    said = template_explainer(state).explain(
        recommendation_facts(state, user, ids[0]), item_about(state, ids[0])
    )
    expect(first.locator(".facts > .explanation:first-child .sentence")).to_have_text(said.text)
    expect(first.locator(".facts .explanation .source")).to_have_text(
        "written by the template: no language model configured"
    )
    expect(first.locator(".facts")).to_contain_text("Close by text to what you liked")
    first.locator("[data-action=why]").click()
    expect(first.locator(".facts")).to_have_count(0)

    liked = ids[1]
    results.nth(1).locator("[data-action=like]").click()
    expect(page.locator("#status")).to_contain_text("API key")  # none typed yet: nothing sent
    assert liked not in {state.item_ids[i] for i in state.seen(state.user(user))}
    page.fill("#api-key", KEY)
    results.nth(1).locator("[data-action=like]").click()
    expect(page.locator(f'#results .result[data-item-id="{liked}"]')).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("Liked")
    expect(results).to_have_count(10)
    expect(page.locator("#results .result.fresh")).not_to_have_count(0)
    assert state.item(liked) in state.seen(state.user(user))

    first.locator("[data-action=why]").click()
    expect(first.locator(".facts")).to_contain_text("Popularity: #")
    target = first.get_attribute("data-item-id")
    first.locator("[data-action=similar]").click()
    similar = page.locator("#similar .result")
    expect(similar).to_have_count(8)
    expect(page.locator("#similar-heading")).to_contain_text("Similar to")
    similar_ids = [similar.nth(i).get_attribute("data-item-id") for i in range(8)]
    assert target not in similar_ids
    assert similar_ids == [state.item_ids[i] for i, _ in state.similar(target, 8)]
    page.wait_for_function("[...document.images].every((img) => img.complete)")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if wanted := os.environ.get("CROSSREC_WEB_SCREENSHOT"):
        shutil.copyfile(shot, wanted)

    page.fill("#query", "a frightening horror film")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results-heading")).to_have_text("Search: “a frightening horror film”")
    expect(results).to_have_count(10)

    page.set_input_files("#file", files=[{"name": "still.png", "mimeType": "image/png", "buffer": PNG}])
    expect(page.locator("#status")).to_contain_text("no image encoder")  # this bundle encoded text only
    assert not errors, errors


class Slow(LLM):
    """A model that takes `delay` seconds and cites the first fact of the prompt."""

    name = "slow-web-fake"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def complete(self, request: Request) -> str:
        time.sleep(self.delay)
        first = re.findall(r"\[([A-Z]\d?)\]", request.prompt.rsplit("Facts:", 1)[1])[0]
        return json.dumps({"text": f"fans of [{first}] should like this one."})


def test_the_page_shows_the_model_sentence_once_it_is_written(state, browser, tmp_path):
    """The template stands in while the model is still generating; the page asks again and shows the
    model's sentence when it has landed in the cache."""
    from playwright.sync_api import expect

    explainer = Explainer(
        Slow(1.0), Vocabulary.from_items(state.items), GenerationCache(tmp_path / "c.sqlite")
    )
    app = create_app(state, api_key=KEY, explainer=explainer, explain_wait_s=0)
    with _served(app) as url:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        page.fill("#user", state.user_ids[0])
        page.click("#user-form button[type=submit]")
        first = page.locator("#results .result").first
        expect(first).to_be_visible()
        first.locator("[data-action=why]").click()
        source = first.locator(".facts .explanation .source")
        expect(source).to_have_text("written by the template: still generating")
        expect(source).to_have_text("written by the language model (cached)", timeout=15_000)
        expect(first.locator(".facts .explanation .sentence")).to_contain_text("Fans of ")
        expect(first.locator(".facts")).to_contain_text("Popularity: #")
