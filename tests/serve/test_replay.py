"""A server started on an existing log comes back to the state the log describes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from crossrec.serve.app import create_app
from crossrec.serve.state import ServingState, UnknownId
from crossrec.serve.store import EventStore

pytestmark = pytest.mark.slow


def test_replaying_the_log_rebuilds_users_items_and_deletions(bundle, tmp_path):
    with EventStore(tmp_path / "log.sqlite") as store:
        live = ServingState(bundle)
        client = TestClient(create_app(live, api_key="k", store=store))
        items = [str(i) for i in bundle.item_ids[:10]]
        events = [{"user_id": "replayed", "item_id": i} for i in items]
        assert (
            client.post("/feedback", json={"events": events}, headers={"X-API-Key": "k"}).status_code == 200
        )
        for name in ("kept", "dropped"):
            meta = {"title": f"{name} (2030)", "genres": "Drama"}
            assert (
                client.put(
                    f"/items/{name}", data={"metadata": json.dumps(meta)}, headers={"X-API-Key": "k"}
                ).status_code
                == 200
            )
        assert client.delete("/items/dropped", headers={"X-API-Key": "k"}).status_code == 200

        fresh = ServingState(bundle)
        assert fresh.catch_up(store) == 13 and fresh.log_seq == store.last_seq()
        assert fresh.catch_up(store) == 0  # nothing new
    assert fresh.recommend("replayed", 10) == live.recommend("replayed", 10)
    np.testing.assert_array_equal(
        fresh.item_vectors[fresh.item("kept")], live.item_vectors[live.item("kept")]
    )
    with pytest.raises(UnknownId):
        fresh.item("dropped")
