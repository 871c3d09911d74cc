"""A real `crossrec serve` process on loopback for the serving benchmarks (this checkout's code)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    bundle: Path, store: Path, log: Path, options: Sequence[str] = (), timeout_s: float = 180.0
) -> tuple[subprocess.Popen, str]:
    """`crossrec serve BUNDLE --no-auth --store STORE [options]` on a free port, its output in `log`;
    returned with its URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "crossrec.cli", "serve", str(bundle), "--no-auth", "--port", str(port),
               "--store", str(store), *options]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.kill()
    raise RuntimeError(f"the server did not start in {timeout_s:g} s")
