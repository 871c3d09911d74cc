"""Real `crossrec serve` processes on loopback for the tests that need one (durability, replicas)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import crossrec

CROSSREC = Path(sys.executable).parent / "crossrec"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle_dir: Path, store: Path, port: int, key: str) -> subprocess.Popen:
    """A server on `port` over the event log `store`, once its /health answers (killed on failure)."""
    env = {
        **os.environ,
        "CROSSREC_API_KEY": key,
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": str(Path(crossrec.__file__).parents[1]),
    }
    proc = subprocess.Popen(
        [str(CROSSREC), "serve", str(bundle_dir), "--port", str(port), "--store", str(store)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not come up")
