"""Throughput of plain recommendations while explanations are generated for other requests.

A real `crossrec serve` (uvicorn, its own process, on 127.0.0.1) with the real SmolLM2 at one thread
(`--llm smollm2 --llm-threads 1`, when llama-cpp-python is importable; else the template, and the
table says so). A few client threads send plain `GET /users/{u}/recommendations` (random users,
bounded by a request count and a time) in two alternating phases:

- off: nothing else is asked;
- on: a separate client stream asks `explain=true` for users it has not asked before (so every pair
  is uncached: the worker generates all the time, and the queue fills).

Requests/s and p50 / p95 latency of the plain requests per phase (pooled over the rounds), side by
side with the ratio on / off; the explain stream's answers by source and the generations the server
finished. The whole measurement runs `--repeats` times, each on a fresh server and a fresh cache.

    python bench/serve_explain.py --bundle runs/bench-serve/serve-users/bundle
    # writes bench/results/serve_explain.json (the bundle: bench/serve_live.py's temporal LightGCN)
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import numpy as np
from api_processes import start_server
from rich.console import Console
from rich.table import Table

from crossrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent


def _start(bundle: Path, work: Path, llm: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    options = [
        "--llm", llm, "--llm-threads", str(args.llm_threads), "--llm-nice", str(args.llm_nice),
        "--llm-cache", str(work / "explanations.sqlite"), "--explain-queue", str(args.queue),
        "--explain-wait", str(args.wait),
    ]  # fmt: skip
    return start_server(bundle, work / "serve.sqlite", work / "server.log", options)


def _metric(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (all labels)."""
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def _drain(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _metric(httpx.get(f"{url}/metrics").text, "crossrec_explanations_pending") > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"explanations still pending after {timeout_s:g} s")
        time.sleep(0.5)


class Explainer(threading.Thread):
    """The other stream: explain=true for a user not asked before, one request after the other."""

    def __init__(self, url: str, users: list[str], k: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.users, self.k, self.every_s = url, users, k, every_s
        self.running = threading.Event()
        self.stop = threading.Event()
        self.sources: dict[str, int] = {}
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            for user in self.users:
                self.running.wait()
                if self.stop.is_set():
                    return
                started = time.perf_counter()
                got = client.get(f"/users/{user}/recommendations", params={"k": self.k, "explain": "true"})
                self.latencies.append(time.perf_counter() - started)
                self.stop.wait(max(self.every_s - self.latencies[-1], 0.0))  # paced, as people click
                if got.status_code != 200:
                    self.errors += 1
                    continue
                for item in got.json()["items"]:
                    said = item["explanation"]
                    key = said["source"] if not said["reason"] else f"{said['source']}: {said['reason'][:40]}"
                    self.sources[key] = self.sources.get(key, 0) + 1


def _plain(
    url: str, users: list[str], clients: int, requests: int, seconds: float, seed: int
) -> dict[str, Any]:
    """`clients` threads, each up to `requests` plain recommendations or `seconds`, whichever first."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=url, timeout=60) as http:
            barrier.wait()
            end = time.monotonic() + seconds
            for _ in range(requests):
                if time.monotonic() > end:
                    break
                started = time.perf_counter()
                got = http.get(f"/users/{rng.choice(users)}/recommendations", params={"k": 10})
                latencies[n].append(time.perf_counter() - started)
                errors[n] += got.status_code != 200

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.perf_counter() - started,
        "latencies": [x for part in latencies for x in part],
        "errors": sum(errors),
    }


def _summary(segments: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = np.array([x for s in segments for x in s["latencies"]])
    seconds = sum(s["seconds"] for s in segments)
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "errors": sum(s["errors"] for s in segments),
    }


def measure(args: argparse.Namespace, llm: str, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="serve-explain-") as tmp:
        work = Path(tmp)
        server, url = _start(args.bundle, work, llm, args)
        try:
            users = httpx.get(f"{url}/users", params={"limit": 1000}).json()["users"]
            _plain(url, users, args.clients, args.requests, 3.0, seed=-1)  # warm up, not counted
            stream = Explainer(
                url, random.Random(repeat).sample(users, len(users)), args.explain_k, args.explain_every
            )
            stream.start()
            segments: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            generated = {"off": 0.0, "on": 0.0}
            depth: list[float] = []
            for round_ in range(args.rounds):
                for phase in ("off", "on"):
                    if phase == "off":
                        _drain(url)  # the last phase's jobs finished: the worker idle
                    before = httpx.get(f"{url}/metrics").text
                    if phase == "on":
                        stream.running.set()
                        time.sleep(0.5)  # the worker busy before the plain clients start
                    seed = 100 * repeat + 10 * round_ + (phase == "on")
                    segments[phase].append(
                        _plain(url, users, args.clients, args.requests, args.seconds, seed)
                    )
                    after = httpx.get(f"{url}/metrics").text
                    if phase == "on":
                        stream.running.clear()
                        depth.append(_metric(after, "crossrec_explanation_queue_depth"))
                    count = "crossrec_explanation_generation_seconds_count"
                    generated[phase] += _metric(after, count) - _metric(before, count)
            stream.stop.set()
            stream.running.set()
            stream.join(150)
            metrics = httpx.get(f"{url}/metrics").text
            gen_count = _metric(metrics, "crossrec_explanation_generation_seconds_count")
            gen_sum = _metric(metrics, "crossrec_explanation_generation_seconds_sum")
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    off, on = _summary(segments["off"]), _summary(segments["on"])
    return {
        "repeat": repeat,
        "off": off,
        "on": on,
        "ratio_on_off": {
            "requests_per_s": on["requests_per_s"] / off["requests_per_s"],
            "p50_ms": on["p50_ms"] / off["p50_ms"],
            "p95_ms": on["p95_ms"] / off["p95_ms"],
        },
        "generations_finished": generated,
        "generation_mean_s": gen_sum / gen_count if gen_count else None,
        "queue_depth_at_phase_end": depth,
        "explain_stream": {
            "requests": len(stream.latencies),
            "p50_ms": 1000 * float(np.percentile(stream.latencies, 50)) if stream.latencies else None,
            "errors": stream.errors,
            "explanations_by_source": dict(sorted(stream.sources.items())),
        },
    }


def main() -> None:
    from machine import machine_facts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=ROOT / "runs" / "bench-serve" / "serve-users" / "bundle"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_explain.json")
    parser.add_argument("--clients", type=int, default=4, help="plain client threads")
    parser.add_argument(
        "--requests", type=int, default=1500, help="plain requests per client and phase, at most"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per phase, at most")
    parser.add_argument("--rounds", type=int, default=2, help="off / on phases, alternating")
    parser.add_argument("--repeats", type=int, default=2, help="whole measurements, each on a fresh server")
    parser.add_argument("--explain-k", type=int, default=5, help="recommendations per explain=true request")
    parser.add_argument(
        "--explain-every", type=float, default=1.0, help="seconds between explain=true requests"
    )
    parser.add_argument("--llm-nice", type=int, default=10, help="the server's --llm-nice")
    parser.add_argument("--llm-threads", type=int, default=1)
    parser.add_argument("--queue", type=int, default=8, help="the server's --explain-queue")
    parser.add_argument("--wait", type=float, default=3.0, help="the server's --explain-wait")
    args = parser.parse_args()
    console = Console(width=140)
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"no bundle at {args.bundle}: run bench/serve_live.py first, or pass --bundle")
    try:
        import llama_cpp  # noqa: F401

        llm, note = "smollm2", f"SmolLM2-135M-Instruct (llama.cpp, {args.llm_threads} thread)"
    except ImportError:
        llm, note = (
            "template",
            "llama-cpp-python is not installed: the template explains, nothing is generated",
        )
    load_before = os.getloadavg()
    runs = []
    for repeat in range(args.repeats):
        run = measure(args, llm, repeat)
        runs.append(run)
        table = Table(
            title=f"run {repeat + 1}: plain GET /users/{{u}}/recommendations, {args.clients} clients; {note}"
        )
        for column in ("explanations for other requests", "requests", "req/s", "p50 ms", "p95 ms", "errors"):
            table.add_column(column, justify="left" if column.startswith("expl") else "right")
        for phase, label in (("off", "off"), ("on", "on (explain=true stream)")):
            row = run[phase]
            table.add_row(
                label, f"{row['requests']:,}", f"{row['requests_per_s']:.1f}", f"{row['p50_ms']:.1f}",
                f"{row['p95_ms']:.1f}", str(row["errors"]),
            )  # fmt: skip
        ratio = run["ratio_on_off"]
        table.add_row(
            "ratio on / off",
            "",
            f"{ratio['requests_per_s']:.3f}",
            f"{ratio['p50_ms']:.3f}",
            f"{ratio['p95_ms']:.3f}",
            "",
        )
        console.print(table)
        stream = run["explain_stream"]
        mean = run["generation_mean_s"]
        console.print(
            f"explain stream: {stream['requests']} requests (p50 {stream['p50_ms'] or 0:.0f} ms, "
            f"{stream['errors']} errors); explanations {stream['explanations_by_source']}; generations "
            f"finished during the phases {run['generations_finished']}, "
            f"{'n/a' if mean is None else f'{mean:.2f}'} s each",
            soft_wrap=True,
        )
    command = "python bench/serve_explain.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_json_atomic(
        args.out,
        {
            "command": command.strip(),
            "llm": note,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": runs,
            **machine_facts(load_before),
        },
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
