"""Acknowledged writes survive a kill -9 of the server: a real `crossrec serve` process, a burst of
concurrent feedback from another process, SIGKILL mid-burst, restart, compare."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from servers import free_port, start_server

from crossrec.serve.store import EventStore

pytestmark = pytest.mark.slow
KEY = "durable"


def test_acknowledged_writes_survive_kill_9(bundle, bundle_dir, tmp_path):
    store_path, port = tmp_path / "serve.sqlite", free_port()
    server = start_server(bundle_dir, store_path, port, KEY)
    url = f"http://127.0.0.1:{port}"
    items = [str(i) for i in bundle.item_ids[:200]]
    # A user written before the burst: their recommendations must come back the same after restart.
    quiet_user = "quiet-user"
    events = [{"user_id": quiet_user, "item_id": i} for i in items[:12]]
    assert (
        httpx.post(f"{url}/feedback", json={"events": events}, headers={"X-API-Key": KEY}).status_code == 200
    )
    before = httpx.get(f"{url}/users/{quiet_user}/recommendations", params={"k": 10}).json()

    acked: list[tuple[str, str]] = []
    lock, stop = threading.Lock(), threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(timeout=5) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                batch = [
                    {"user_id": f"burst-{w}-{n % 7}", "item_id": items[(w * 31 + n * 7 + j) % 200]}
                    for j in range(3)
                ]
                try:
                    response = client.post(
                        f"{url}/feedback", json={"events": batch}, headers={"X-API-Key": KEY}
                    )
                except httpx.HTTPError:
                    return  # the server is gone: this batch was never acknowledged
                if response.status_code == 200:
                    with lock:
                        acked.extend((e["user_id"], e["item_id"]) for e in batch)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acked) >= 150:
                break
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    stop.set()
    for t in threads:
        t.join()

    with EventStore(store_path) as store:
        logged = [(e.event.user_id, e.event.item_id) for e in store.replay() if hasattr(e.event, "user_id")]
    missing = set(acked) - set(logged)
    assert not missing, f"{len(missing)} acknowledged events lost"

    server = start_server(bundle_dir, store_path, port, KEY)
    try:
        after = httpx.get(f"{url}/users/{quiet_user}/recommendations", params={"k": 10}).json()
        assert [r["item_id"] for r in after["items"]] == [r["item_id"] for r in before["items"]]
        burst_user = acked[0][0]
        assert httpx.get(f"{url}/users/{burst_user}/recommendations").status_code == 200  # replayed
    finally:
        server.kill()
        server.wait()
