"""A real Ray cluster on loopback for the tests: a head and worker nodes started with `ray start`
as separate processes, each with its own temp dir, explicit CPUs and memory, usage stats off, and
stopped by killing only the processes of this cluster (never `ray stop`, which stops every cluster
on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

IP = "127.0.0.2"  # a loopback address of its own: Ray picks a wrong interface or hangs otherwise
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((IP, 0))
        return s.getsockname()[1]


def _node(tmp: Path, name: str, cpus: int, head_address: str | None) -> list[str]:
    args = [
        str(RAY), "start", f"--node-ip-address={IP}", f"--num-cpus={cpus}", "--memory=1500000000",
        "--object-store-memory=150000000", f"--temp-dir={tmp / name}", "--disable-usage-stats",
    ]  # fmt: skip
    if head_address is None:
        return [*args, "--head", f"--port={_free_port()}", "--include-dashboard=false"]
    return [*args, f"--address={head_address}"]


def node_processes(tmp: Path) -> list[psutil.Process]:
    """This cluster's processes: those naming its temp dir, and their children (the workers)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(tmp) in part for part in proc.info["cmdline"] or []):
            for p in (proc, *proc.children(recursive=True)):
                found[p.pid] = p
    return list(found.values())


@contextmanager
def loopback_cluster(*, workers: int = 1, cpus: int = 1) -> Iterator[tuple[str, Path]]:
    """(address, temp dir) of a head plus `workers` worker nodes, each with `cpus` CPUs. The temp
    dir is short: Ray's socket paths inside it must stay under the OS limit of 107 bytes."""
    tmp = Path(tempfile.mkdtemp(prefix="crossrec-ray-", dir="/tmp"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    head = _node(tmp, "head", cpus, None)
    address = f"{IP}:{head[-2].split('=')[1]}"
    try:
        subprocess.run(head, check=True, env=env, capture_output=True, timeout=120)
        for i in range(workers):
            subprocess.run(_node(tmp, f"worker{i}", cpus, address), check=True, env=env, capture_output=True,
                           timeout=120)  # fmt: skip
        yield address, tmp
    finally:
        procs = node_processes(tmp)
        for proc in procs:
            with suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=15)
        for proc in alive:
            proc.kill()
        time.sleep(0.1)
