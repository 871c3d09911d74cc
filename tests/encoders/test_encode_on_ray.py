"""Encoding through Ray Data on a real loopback cluster (a head and a worker, separate processes)
writes the same cache as the local path: the same vectors (cosine >= 0.9999), present masks and
ingest report, also with an encoder actor killed mid-run, and each path reuses what the other wrote."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
import ray  # a dev dependency: these tests never skip
import yaml
from ray_cluster import IP, loopback_cluster, node_processes
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.data.loaders import load_dataset
from crossrec.encoders.build import content_subset, encode_dataset, items_to_encode
from crossrec.encoders.on_ray import encode_dataset_on_ray

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CONFIG = {"text": {"batch_size": 32}, "image": {"batch_size": 12}, "audio": None}


def _slice(shared_data, tmp_path):
    """200 most-rated movies' text; posters for the first 46 of them, one broken file, one missing."""
    dataset = load_dataset("movielens", shared_data / "movielens-small")
    sub = content_subset(dataset, items_to_encode(dataset, 200))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    images = [path if i < 46 else None for i, path in enumerate(sub.content.image or [])]
    assert sum(p is not None for p in images) >= 40
    images[46], images[47] = str(broken), str(tmp_path / "missing.jpg")
    text = dict(sub.content.text)
    text = {name: [None if i == 5 else v for i, v in enumerate(values)] for name, values in text.items()}
    return replace(sub, content=replace(sub.content, image=images, text=text))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _issues(result):
    return sorted((i.modality, i.item, i.action, i.reason) for i in result.report.issues)


def test_encoding_on_a_loopback_cluster_equals_the_local_path_and_shares_its_cache(shared_data, tmp_path):
    data = _slice(shared_data, tmp_path)
    start = time.perf_counter()
    local = encode_dataset(data, CONFIG, tmp_path / "local", progress=False, threads=1)
    local_s = time.perf_counter() - start
    killed: list[int] = []
    with loopback_cluster(workers=1, cpus=1) as (address, tmp):

        def kill_an_actor(modality: str, done: int, pending: int) -> None:
            """After the first text batch is cached, SIGKILL an encoder actor: its batches in flight
            must be run again on a restarted actor, and nothing lost or written twice."""
            if killed or modality != "text" or done >= pending:
                return
            for proc in node_processes(tmp):
                try:
                    title = " ".join(proc.cmdline())
                except Exception:
                    continue
                if "MapWorker" in title and "EncodeBatches" in title:
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return

        ray.init(address=address, _node_ip_address=IP, logging_level="ERROR")
        try:
            start = time.perf_counter()
            on_ray = encode_dataset_on_ray(
                data, CONFIG, tmp_path / "ray", concurrency=2, progress=False, on_batch=kill_an_actor
            )
            ray_s = time.perf_counter() - start
            # a Ray run over the local path's cache encodes nothing new (the broken file is tried
            # again, as a local run would)
            over_local = encode_dataset_on_ray(data, CONFIG, tmp_path / "local", progress=False)
            # the command: `crossrec encode CONFIG --ray ADDRESS` (Ray is initialised here already)
            command = CliRunner().invoke(app, ["encode", str(_encode_yaml(shared_data, tmp_path)), "--quiet",
                                               "--ray", address, "--ray-actors", "2"])  # fmt: skip
        finally:
            ray.shutdown()
    print(f"local {local_s:.1f} s, on the loopback cluster {ray_s:.1f} s (an actor killed)")
    assert killed, "no encoder actor was found to kill"

    assert set(on_ray.vectors) == set(local.vectors) == {"text", "image", "image_labels"}
    assert on_ray.fingerprints == local.fingerprints
    worst = {}
    for name, matrix in local.vectors.items():
        mask = local.present[name]
        assert np.array_equal(on_ray.present[name], mask)
        assert not on_ray.vectors[name][~mask].any()
        cos = _cosine(on_ray.vectors[name][mask], matrix[mask])
        worst[name] = float(cos.min())
        assert cos.min() >= 0.9999, name
    print("worst cosine:", worst)
    assert int(local.present["text"].sum()) == 199 and int(local.present["image"].sum()) >= 40

    assert _issues(on_ray) == _issues(local)
    reasons = {(i.modality, i.item): i.reason for i in local.report.issues}
    assert reasons[("text", 5)].startswith("empty text")
    assert reasons[("image", 47)] == "file not found"
    assert "not a readable image" in reasons[("image", 46)]  # found by an actor, reported by the driver
    assert {m: asdict(c) for m, c in on_ray.report.counts.items()} == {
        m: asdict(c) for m, c in local.report.counts.items()
    }

    # the local path over the Ray-written cache encodes nothing and reads the same vectors
    again = encode_dataset(data, CONFIG, tmp_path / "ray", progress=False, threads=1)
    for result in (again, over_local):
        for modality, counts in result.report.counts.items():
            assert counts.encoded == 0 and counts.cached == local.report.counts[modality].encoded, modality
    assert all(np.array_equal(again.vectors[n], on_ray.vectors[n]) for n in on_ray.vectors)
    assert all(np.array_equal(over_local.vectors[n], local.vectors[n]) for n in local.vectors)

    assert command.exit_code == 0, command.output
    assert "text: 20 items, 20 encoded" in command.output
    report = json.loads((tmp_path / "cli" / "ingest_report-ray-encode.json").read_text())
    assert report["counts"]["text"]["encoded"] == 20 and list((tmp_path / "cli" / "text").glob("*/shard-*"))


def _encode_yaml(shared_data, tmp_path):
    config = {
        "name": "ray-encode",
        "dataset": {"format": "movielens", "path": str(shared_data / "movielens-small"),
                    "options": {"posters": False, "overviews": False}},
        "encode": {"cache_dir": str(tmp_path / "cli"), "max_items": 20,
                   "models": {"text": {"fields": ["title", "genres"]}, "image": None, "audio": None}},
    }  # fmt: skip
    path = tmp_path / "encode.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
