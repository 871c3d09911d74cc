"""API replicas over one event log: plain-recommendation throughput of 1 server process against 2
on this machine, each replica loaded by its own `wrk`, while a writer posts feedback to the first
replica and reads the same user back from the last one (every read must already reflect the write).

Also the per-request price of staying in step: `ServingState.catch_up` when nothing is new.

    python bench/serve_replicas.py --bundle runs/bench-serve/serve-users/bundle
    # writes bench/results/serve_replicas.json (the bundle: bench/serve_live.py's temporal LightGCN)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import numpy as np
from api_processes import start_server
from machine import machine_facts
from rich.console import Console
from rich.table import Table

from crossrec.experiment import load_bundle
from crossrec.io import write_json_atomic
from crossrec.serve.state import ServingState
from crossrec.serve.store import EventStore

ROOT = Path(__file__).resolve().parent.parent
LUA = """
local users = {%s}
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/users/" .. users[math.random(#users)] .. "/recommendations?k=10")
end
"""


class Writer(threading.Thread):
    """Feedback for a fresh user to the first replica, then that user's recommendations from the
    last replica: a 200 that excludes the items just written means the write was seen."""

    def __init__(self, first: str, last: str, items: list[str], every_s: float) -> None:
        super().__init__(daemon=True)
        self.first, self.last, self.items, self.every_s = first, last, items, every_s
        self.stop = threading.Event()
        self.seen, self.missed, self.latencies = 0, 0, []

    def run(self) -> None:
        rng = np.random.default_rng(0)
        n = 0
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                user, picks = f"writer-{n}", list(rng.choice(self.items, 5, replace=False))
                n += 1
                started = time.perf_counter()
                events = {"events": [{"user_id": user, "item_id": i} for i in picks]}
                wrote = http.post(f"{self.first}/feedback", json=events)
                read = http.get(f"{self.last}/users/{user}/recommendations", params={"k": 10})
                self.latencies.append(time.perf_counter() - started)
                ok = wrote.status_code == read.status_code == 200
                ok = ok and not {r["item_id"] for r in read.json()["items"]} & set(picks)
                self.seen += ok
                self.missed += not ok
                self.stop.wait(self.every_s)


def _wrk(
    url: str, users: list[str], seconds: int, connections: int, seed: int, script: Path
) -> dict[str, Any]:
    script.write_text(LUA % (", ".join(f'"{u}"' for u in users), seed))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    return {"requests_per_s": rps, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "latency": percentiles}


def measure(args: argparse.Namespace, replicas: int, users: list[str], items: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "serve.sqlite"
        servers = [start_server(args.bundle, store, work / f"server{r}.log") for r in range(replicas)]
        urls = [url for _, url in servers]
        writer = Writer(urls[0], urls[-1], items, args.write_every)
        try:
            for url in urls:  # warm up
                httpx.get(f"{url}/users/{users[0]}/recommendations")
            writer.start()
            results: list[dict[str, Any]] = [{} for _ in urls]

            def load(r: int) -> None:
                per_replica = max(1, args.connections // replicas)  # the same clients, spread over replicas
                results[r] = _wrk(urls[r], users, args.seconds, per_replica, r, work / f"users{r}.lua")

            threads = [threading.Thread(target=load, args=(r,)) for r in range(replicas)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            writer.stop.set()
            writer.join(30)
            for server, _ in servers:
                server.kill()
                server.wait()
    return {
        "replicas": replicas,
        "requests_per_s": sum(r["requests_per_s"] for r in results),
        "per_replica": results,
        "writes": writer.seen + writer.missed,
        "writes_seen_by_the_other_replica": writer.seen,
        "write_then_read_p50_ms": 1000 * float(np.median(writer.latencies)) if writer.latencies else None,
    }


def catch_up_cost(bundle_dir: Path, calls: int = 20_000) -> float:
    """Microseconds of a no-op `catch_up` (nothing new in the log): what every request pays."""
    state = ServingState(load_bundle(bundle_dir))
    with tempfile.TemporaryDirectory() as tmp, EventStore(Path(tmp) / "log.sqlite") as store:
        state.catch_up(store)
        start = time.perf_counter()
        for _ in range(calls):
            state.catch_up(store)
        return 1e6 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=ROOT / "runs" / "bench-serve" / "serve-users" / "bundle"
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8, help="in all, split over the replicas")
    parser.add_argument("--write-every", type=float, default=0.2, help="seconds between the writer's writes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_replicas.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"no bundle at {args.bundle}: run bench/serve_live.py first, or pass --bundle")
    load_avg = os.getloadavg()
    bundle = load_bundle(args.bundle)
    users = [str(u) for u in np.random.default_rng(0).choice(bundle.user_ids, 200, replace=False)]
    items = [str(i) for i in bundle.item_ids[:2000]]
    console = Console()
    cost = catch_up_cost(args.bundle)
    rows = [measure(args, replicas, users, items) for replicas in (1, 2)]
    table = Table(title=f"plain recommendations, wrk {args.connections} connections in all, {args.seconds} s")
    for column in ("replicas", "requests/s", "p50 / p99 per replica", "writes seen across replicas"):
        table.add_column(column)
    for row in rows:
        latency = "; ".join(
            f"{r['latency'].get('50')} / {r['latency'].get('99')}" for r in row["per_replica"]
        )
        seen = f"{row['writes_seen_by_the_other_replica']} / {row['writes']}"
        table.add_row(str(row["replicas"]), f"{row['requests_per_s']:.0f}", latency, seen)
    console.print(table)
    ratio = rows[1]["requests_per_s"] / rows[0]["requests_per_s"]
    console.print(f"2 replicas / 1: {ratio:.2f}x; a no-op catch-up costs {cost:.1f} us per request")
    write_json_atomic(
        args.out,
        {
            "command": "python bench/serve_replicas.py",
            "rows": rows,
            "throughput_ratio_2_vs_1": ratio,
            "catch_up_noop_us": cost,
            "machine": machine_facts(load_avg),
        },
    )


if __name__ == "__main__":
    main()
