"""The HTTP API on a real bundle, through FastAPI's test client."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from crossrec.serve.app import create_app
from crossrec.serve.state import ServingState

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "secret"}


@pytest.fixture
def client(bundle):
    return TestClient(create_app(ServingState(bundle, exact_below=1000), api_key="secret"))


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["item_id"] for r in response.json()["items"]]


def test_recommendations_match_the_bundle_and_unknown_ids_are_404(client, bundle):
    user = str(bundle.user_ids[3])
    expected = [i for i, _ in bundle.recommend(user, k=10)]
    got = client.get(f"/users/{user}/recommendations", params={"k": 10})
    assert _ids(got)[:10] == expected  # HNSW above 1,000 items: exact here on this small catalogue's top
    missing = client.get("/users/nobody/recommendations")
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    assert client.get("/items/nope/similar").status_code == 404
    assert client.get("/health").json()["items"] == len(bundle.item_ids)


def test_filters_and_exclusions_keep_k_results(client, bundle):
    user = str(bundle.user_ids[5])
    comedies = _ids(client.get(f"/users/{user}/recommendations", params={"k": 15, "filter": "genres=Comedy"}))
    assert len(comedies) == 15
    rows = {r["id"]: r for r in bundle.items}
    assert all("Comedy" in (rows[i]["genres"] or "") for i in comedies)
    first = _ids(client.get(f"/users/{user}/recommendations", params={"k": 5}))
    rest = _ids(client.get(f"/users/{user}/recommendations", params={"k": 5, "exclude": first[:3]}))
    assert len(rest) == 5 and not set(rest) & set(first[:3])
    assert client.get(f"/users/{user}/recommendations", params={"filter": "genres"}).status_code == 422


def test_feedback_changes_the_next_recommendations_and_new_users_get_their_own(client, bundle):
    user = str(bundle.user_ids[0])
    before = _ids(client.get(f"/users/{user}/recommendations", params={"k": 10}))
    rows = {r["id"]: r for r in bundle.items}
    horror = [i for i in map(str, bundle.item_ids) if "Horror" in (rows[i]["genres"] or "")][:15]
    events = [{"user_id": user, "item_id": i, "kind": "click"} for i in horror]
    assert client.post("/feedback", json={"events": events}).status_code == 401  # no key
    ack = client.post("/feedback", json={"events": events}, headers=KEY)
    assert ack.status_code == 200 and ack.json() == {"accepted": 15, "users": [user]}
    after = _ids(client.get(f"/users/{user}/recommendations", params={"k": 10}))
    assert after != before and not set(after) & set(horror)  # what the user just met is excluded

    animation = [i for i in map(str, bundle.item_ids) if "Animation" in (rows[i]["genres"] or "")][:15]
    for new_user, liked in (("new-horror", horror), ("new-animation", animation)):
        events = [{"user_id": new_user, "item_id": i} for i in liked]
        assert client.post("/feedback", json={"events": events}, headers=KEY).status_code == 200
    recs = {
        u: _ids(client.get(f"/users/{u}/recommendations", params={"k": 20}))
        for u in ("new-horror", "new-animation")
    }
    share = {
        u: np.mean([g in (rows[i]["genres"] or "") for i in recs[u]])
        for u, g in (("new-horror", "Horror"), ("new-animation", "Animation"))
    }
    assert share["new-horror"] > 0.5 and share["new-animation"] > 0.5, share
    bad = client.post(
        "/feedback", json={"events": [{"user_id": "x", "item_id": "no-such-item"}]}, headers=KEY
    )
    assert bad.status_code == 404 and "no-such-item" in bad.json()["detail"]


def test_a_new_item_is_encoded_indexed_and_found_at_once(client):
    meta = {
        "title": "Zombie Harvest (2031)",
        "genres": "Horror, Thriller",
        "overview": "The dead rise on a farm.",
    }
    put = client.put("/items/new-1", data={"metadata": json.dumps(meta)}, headers=KEY)
    assert put.status_code == 200, put.text
    assert put.json()["modalities"] == ["text"]
    found = _ids(client.post("/search/text", json={"query": "Zombie Harvest (2031)", "k": 5}))
    assert "new-1" in found
    similar = client.get("/items/new-1/similar", params={"k": 5})
    assert len(_ids(similar)) == 5
    item = client.get("/items/new-1").json()
    assert item["title"] == meta["title"] and item["image"] is False
    assert client.put("/items/x", data={"metadata": "not json"}, headers=KEY).status_code == 422
    assert client.put("/items/x", data={"metadata": "{}"}).status_code == 401


def test_text_finds_genres_through_the_shared_space(client, bundle):
    found = _ids(
        client.post("/search/text", json={"query": "a frightening horror film", "k": 20, "target": "genres"})
    )
    rows = {r["id"]: r for r in bundle.items}
    assert np.mean(["Horror" in (rows[i]["genres"] or "") for i in found]) > 0.5


def test_uploads_are_checked_before_anything_is_decoded(client):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 32
    lying = client.post(
        "/search/media", data={"modality": "image"}, files={"file": ("a.png", b"GIF89a....", "image/png")}
    )
    assert lying.status_code == 415 and "not image/png" in lying.json()["detail"]
    wrong = client.post(
        "/search/media", data={"modality": "image"}, files={"file": ("a.txt", png, "text/plain")}
    )
    assert wrong.status_code == 415
    no_encoder = client.post(
        "/search/media", data={"modality": "image"}, files={"file": ("a.png", png, "image/png")}
    )
    assert no_encoder.status_code == 422 and "no image encoder" in no_encoder.json()["detail"]
    big = client.post(
        "/feedback", content=b"x" * (2 << 20), headers={**KEY, "content-type": "application/json"}
    )
    assert big.status_code == 413


def test_facts_and_metrics(client, bundle):
    user = str(bundle.user_ids[1])
    item = _ids(client.get(f"/users/{user}/recommendations", params={"k": 1}))[0]
    facts = client.get(f"/users/{user}/recommendations/{item}/facts").json()
    assert facts["item_id"] == item and "genres" in facts["shared"]
    assert set(facts["nearest_liked"]) <= {"text", "genres", "text_shared", "genres_shared"}
    assert facts["popularity"]["of"] == len(bundle.item_ids)
    metrics = client.get("/metrics").text
    assert 'crossrec_requests_total{endpoint="/users/{user_id}/recommendations",status="200"}' in metrics
    assert "crossrec_index_items" in metrics


def test_a_chunked_body_without_a_length_is_cut_at_the_limit(client):
    def chunks():
        for _ in range(320):
            yield b"x" * 65536  # 20 MiB in all, no Content-Length: over twice the upload limit

    response = client.post("/feedback", content=chunks(), headers={**KEY, "content-type": "application/json"})
    assert response.status_code == 413, response.text
    small = client.post(
        "/feedback", content=iter([b'{"events": []}']), headers={**KEY, "content-type": "application/json"}
    )
    assert small.status_code == 422  # under the limit: read and validated as usual


def test_a_deleted_item_leaves_every_list(client, bundle):
    meta = {"title": "Ghost Item (2040)", "genres": "Horror", "overview": "Gone soon."}
    assert client.put("/items/ghost", data={"metadata": json.dumps(meta)}, headers=KEY).status_code == 200
    assert "ghost" in _ids(client.post("/search/text", json={"query": "Ghost Item (2040)", "k": 5}))
    assert client.delete("/items/ghost").status_code == 401
    assert client.delete("/items/ghost", headers=KEY).json() == {"item_id": "ghost", "removed": True}
    assert client.get("/items/ghost").status_code == 404
    assert client.delete("/items/ghost", headers=KEY).status_code == 404
    assert "ghost" not in _ids(client.post("/search/text", json={"query": "Ghost Item (2040)", "k": 20}))
    user = str(bundle.user_ids[2])
    assert "ghost" not in _ids(client.get(f"/users/{user}/recommendations", params={"k": 200}))
