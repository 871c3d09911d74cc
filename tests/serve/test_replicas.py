"""Several servers over one event log are replicas: each applies every replica's writes, in log order,
before it answers, so any of them can take any request."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from servers import free_port, start_server

from crossrec.serve.app import create_app
from crossrec.serve.events import FeedbackEvent
from crossrec.serve.state import ServingState
from crossrec.serve.store import EventStore

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "k"}


def _replicas(bundle, store: EventStore, n: int = 2) -> tuple[list[ServingState], list[TestClient]]:
    states = [ServingState(bundle) for _ in range(n)]
    return states, [TestClient(create_app(s, api_key="k", store=store)) for s in states]


def test_a_write_to_one_replica_is_read_from_another(bundle, tmp_path):
    with EventStore(tmp_path / "log.sqlite") as store:
        (a, b), (to_a, to_b) = _replicas(bundle, store)
        items = [str(i) for i in bundle.item_ids[:8]]
        events = [{"user_id": "new-user", "item_id": i} for i in items]
        assert to_a.post("/feedback", json={"events": events}, headers=KEY).json()["users"] == ["new-user"]
        from_b = to_b.get("/users/new-user/recommendations", params={"k": 10})
        assert from_b.status_code == 200  # b had never heard of the user
        from_a = to_a.get("/users/new-user/recommendations", params={"k": 10}).json()
        assert from_b.json()["items"] == from_a["items"]
        assert not {r["item_id"] for r in from_b.json()["items"]} & set(items)  # seen items excluded

        meta = {"title": "Replicated (2031)", "genres": "Drama"}
        put = to_b.put("/items/replicated", data={"metadata": json.dumps(meta)}, headers=KEY)
        assert put.status_code == 200
        similar = to_a.get("/items/replicated/similar", params={"k": 3})
        assert similar.status_code == 200, similar.text
        assert to_a.delete("/items/replicated", headers=KEY).status_code == 200
        assert to_b.get("/items/replicated/similar").status_code == 404
        assert a.log_seq == b.log_seq == store.last_seq() == len(events) + 2


def test_interleaved_writes_leave_every_replica_in_the_same_state(bundle, tmp_path):
    with EventStore(tmp_path / "log.sqlite") as store:
        states, clients = _replicas(bundle, store, 3)
        items = [str(i) for i in bundle.item_ids[:40]]
        rng = np.random.default_rng(0)
        for n in range(30):  # writes land on replicas at random, for users shared between them
            batch = [{"user_id": f"u{rng.integers(5)}", "item_id": items[rng.integers(40)]} for _ in range(2)]
            client = clients[rng.integers(3)]
            assert client.post("/feedback", json={"events": batch}, headers=KEY).status_code == 200
            if n == 10:
                meta = json.dumps({"title": "Mid-burst (2032)", "genres": "Comedy"})
                assert clients[2].put("/items/mid", data={"metadata": meta}, headers=KEY).status_code == 200
        fresh = ServingState(bundle)
        fresh.catch_up(store)  # a replica started after the burst
        for state in [*states, fresh]:
            state.catch_up(store)
            assert state.user_ids == fresh.user_ids and state.item_ids == fresh.item_ids
            assert all(state.seen(u) == fresh.seen(u) for u in range(len(fresh.user_ids)))
            np.testing.assert_array_equal(state.item_vectors, fresh.item_vectors)
            np.testing.assert_array_equal(state.popularity, fresh.popularity)
            # The same histories; the user vectors agree to the fold-in's own tolerance (its L-BFGS
            # solves a block of users at once, so which users fold in together moves the last digits).
            np.testing.assert_allclose(state.user_vectors, fresh.user_vectors, atol=1e-3)


def test_feedback_logged_after_its_item_was_deleted_is_listed_not_applied(bundle, tmp_path):
    with EventStore(tmp_path / "log.sqlite") as store:
        state = ServingState(bundle)
        doomed, kept = str(bundle.item_ids[0]), str(bundle.item_ids[1])
        # Another replica checked `doomed` before this one deleted it, then logged its feedback.
        store.delete_item(doomed)
        seq = store.append_feedback(
            [FeedbackEvent("racer", doomed, "click"), FeedbackEvent("racer", kept, "click")]
        )
        assert state.catch_up(store) == 2
        assert state.skipped_events == [(seq[0], f"feedback on unknown item '{doomed}'")]
        assert state.seen(state.user("racer")) == {state.item(kept): 1.0}
        store.append_feedback([FeedbackEvent("racer", str(bundle.item_ids[2]), "click")])
        assert state.catch_up(store) == 1 and state.log_seq == store.last_seq()  # not stuck


def test_two_server_processes_over_one_store(bundle, bundle_dir, tmp_path):
    store = tmp_path / "serve.sqlite"
    ports = [free_port(), free_port()]
    servers = [start_server(bundle_dir, store, port, "k") for port in ports]
    try:
        first, second = (f"http://127.0.0.1:{p}" for p in ports)
        items = [str(i) for i in bundle.item_ids[:6]]
        events = {"events": [{"user_id": "across", "item_id": i} for i in items]}
        assert httpx.post(f"{first}/feedback", json=events, headers=KEY).status_code == 200
        there = httpx.get(f"{second}/users/across/recommendations", params={"k": 5})
        here = httpx.get(f"{first}/users/across/recommendations", params={"k": 5})
        assert there.status_code == 200 and there.json()["items"] == here.json()["items"]
    finally:
        for server in servers:
            server.kill()
            server.wait()
