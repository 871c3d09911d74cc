"""The event store: exact round trips, seq order, refusals that name the fault, concurrent writers that lose
nothing, and every acknowledged write surviving a real kill -9."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import crossrec
from crossrec.errors import ConfigError, DataError
from crossrec.serve.events import FeedbackEvent, ItemDeleted, ItemRecord, Logged
from crossrec.serve.retrain import export_interactions
from crossrec.serve.store import EventStore


@pytest.fixture
def store(tmp_path: Path):
    with EventStore(tmp_path / "events.db") as s:
        yield s


def _python(script: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    """`script` in a fresh interpreter importing this checkout's crossrec."""
    env = {**os.environ, "PYTHONPATH": str(Path(crossrec.__file__).parents[1]), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env, text=True, **popen
    )


def test_events_and_vectors_round_trip_exactly_through_a_reopened_file(tmp_path: Path):
    rng = np.random.default_rng(0)
    text = rng.normal(size=384).astype(np.float32)
    text[:3] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]  # sign of zero, subnormal, extreme
    movie = ItemRecord(
        "m1",
        {"title": "Amélie", "overview": "Paris.", "genres": ("Comedy", "Romance"), "image": "posters/1.jpg"},
        {"text": text, "image_shared": rng.normal(size=64)},
    )
    events = [
        FeedbackEvent("u1", "m0", "click", ts=1.5),
        FeedbackEvent("u1", "m0", "rating", 4.5, 2.25),
        FeedbackEvent("ü2", "m0", "play", 31.7, 3.0),
    ]
    with EventStore(tmp_path / "events.db") as store:
        seqs = store.append_feedback(events)
        seqs += [store.upsert_item(movie), store.upsert_item(ItemRecord("m2")), store.delete_item("m0")]
    with EventStore(tmp_path / "events.db") as store:
        replayed = list(store.replay())
    assert replayed == [
        Logged(s, e) for s, e in zip(seqs, [*events, movie, ItemRecord("m2"), ItemDeleted("m0")], strict=True)
    ]
    back = replayed[3].event
    assert back.payload["genres"] == ["Comedy", "Romance"]
    assert back.vectors["text"].dtype == np.float32 and back.vectors["text"].tobytes() == text.tobytes()
    assert back.vectors["image_shared"].shape == (64,)
    assert list(back.vectors) == ["text", "image_shared"]


def test_an_item_record_holds_its_own_read_only_copy_of_the_vectors():
    vector = np.ones(4, dtype=np.float32)
    record = ItemRecord("m1", vectors={"text": vector})
    vector[0] = 5.0
    assert record.vectors["text"][0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        record.vectors["text"][0] = 2.0
    assert record != ItemRecord("m1", vectors={"text": -np.zeros(4)}) != ItemRecord("m1")


def test_replay_is_in_seq_order_interleaved_and_starts_after_after_seq(store: EventStore):
    seqs = []
    for k in range(5):
        seqs += store.append_feedback([FeedbackEvent(f"u{k}", f"i{j}", "click") for j in range(k % 3)])
        seqs.append(store.upsert_item(ItemRecord(f"i{k}", {"title": str(k)})))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert store.count() == len(seqs) and store.last_seq() == seqs[-1]
    full = list(store.replay())
    assert [seq for seq, _ in full] == seqs
    assert [type(e).__name__ for _, e in full][:4] == [
        "ItemRecord",
        "FeedbackEvent",
        "ItemRecord",
        "FeedbackEvent",
    ]
    assert list(store.replay(page=2)) == full  # paging changes nothing
    assert list(store.replay(after_seq=seqs[4])) == full[5:]
    assert list(store.replay(after_seq=store.last_seq())) == []


def test_replay_reads_events_committed_while_it_runs(store: EventStore):
    store.append_feedback([FeedbackEvent("u", f"i{j}", "click") for j in range(3)])
    seen = []
    for seq, _ in store.replay(page=2):
        seen.append(seq)
        if seq == 1:
            store.append_feedback([FeedbackEvent("u", "late", "click")])
    assert seen == [1, 2, 3, 4]


def test_an_empty_store(store: EventStore):
    assert (store.count(), store.last_seq(), list(store.replay()), store.append_feedback([])) == (
        0,
        0,
        [],
        [],
    )


def test_a_store_of_another_schema_version_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "events.db"
    EventStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 2")
    with pytest.raises(DataError, match="schema version 2; this crossrec reads version 1") as err:
        EventStore(path)
    assert err.value.file == str(path)


def test_other_files_are_refused_naming_the_file(tmp_path: Path):
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id TEXT)")
    with pytest.raises(DataError, match=r"not a crossrec event store: it holds tables \['users'\]") as err:
        EventStore(other)
    assert err.value.file == str(other)
    garbage = tmp_path / "notes.db"
    garbage.write_text("not a database, but long enough to be read as a header " * 20)
    with pytest.raises(DataError, match="cannot be used as an event store: file is not a database") as err:
        EventStore(garbage)
    assert err.value.file == str(garbage)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: FeedbackEvent("", "i", "click"), "user_id"),
        (lambda: FeedbackEvent("u", 7, "click"), "item_id"),
        (lambda: FeedbackEvent("u", "i", "like"), "kind"),
        (lambda: FeedbackEvent("u", "i", "rating", float("nan")), "value"),
        (lambda: FeedbackEvent("u", "i", "rating", "4"), "value"),
        (lambda: FeedbackEvent("u", "i", "play", 1.0, float("inf")), "ts"),
        (lambda: ItemRecord(" "), "item_id"),
        (lambda: ItemRecord("i", {"score": float("nan")}), "payload"),
        (lambda: ItemRecord("i", {"poster": Path("p.jpg")}), "payload"),
        (lambda: ItemRecord("i", ["title"]), "payload"),
        (lambda: ItemRecord("i", vectors={"text": [1.0, np.inf]}), "vectors.text"),
        (lambda: ItemRecord("i", vectors={"text": [1e39]}), "vectors.text"),
        (lambda: ItemRecord("i", vectors={"text": np.zeros((2, 3))}), "vectors.text"),
        (lambda: ItemRecord("i", vectors={"text": np.array(["1.0"])}), "vectors.text"),
        (lambda: ItemRecord("i", vectors={"": np.zeros(3)}), "vectors"),
        (lambda: ItemDeleted(""), "item_id"),
    ],
)
def test_bad_events_raise_data_error_naming_the_field(make, field: str):
    with pytest.raises(DataError) as err:
        make()
    assert err.value.field == field
    assert f"field '{field}'" in str(err.value)


def test_a_batch_with_a_non_event_is_refused_whole(store: EventStore):
    with pytest.raises(TypeError, match=r"events\[1\] is a dict"):
        store.append_feedback([FeedbackEvent("u", "i", "click"), {"user_id": "u"}])
    with pytest.raises(DataError, match="field 'item_id'"):
        store.delete_item("")
    assert store.count() == 0


def test_a_locked_store_is_waited_for_within_the_busy_timeout_and_then_named(tmp_path: Path):
    path = tmp_path / "events.db"
    EventStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # COMMIT comes from a timer
    holder.execute("BEGIN IMMEDIATE")
    with EventStore(path, busy_timeout_s=0.1) as impatient, pytest.raises(TimeoutError, match=str(path)):
        impatient.append_feedback([FeedbackEvent("u", "i", "click")])
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    start = time.monotonic()
    with EventStore(path, busy_timeout_s=10) as patient:
        assert patient.append_feedback([FeedbackEvent("u", "i", "click")]) == [1]
    assert time.monotonic() - start >= 0.25  # it waited for the lock rather than failing
    release.join()
    holder.close()


def test_many_first_opens_of_a_new_file_at_once_all_succeed(tmp_path: Path):
    """While one connection switches a new file to WAL, the others meet SQLITE_BUSY at once: the store
    retries within its busy timeout."""
    errors: list[BaseException] = []
    for trial in range(20):
        path, barrier = tmp_path / f"events{trial}.db", threading.Barrier(8)

        def open_and_write(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                with EventStore(path) as store:
                    store.append_feedback([FeedbackEvent("u", "i", "click")])
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=open_and_write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with EventStore(path) as store:
            assert store.count() == 8


def test_a_closed_store_says_so(tmp_path: Path):
    store = EventStore(tmp_path / "events.db")
    store.close()
    with pytest.raises(RuntimeError, match="is closed"):
        store.count()


def _writer_events(tag: str, n: int) -> list[FeedbackEvent]:
    return [FeedbackEvent(f"{tag}-u", f"i{j}", "rating", j / 4, float(j)) for j in range(n)]


def _write_in_batches(store: EventStore, tag: str, n: int, start: threading.Barrier) -> list[int]:
    """`n` events in batches of 1 to 4 (about a hundred transactions for 200 events), all writers starting
    together and pausing between batches as a server does between requests, so that they do overlap (a
    writer that begins again at once keeps the lock: SQLite's waiters poll it with growing sleeps)."""
    events, seqs = _writer_events(tag, n), []
    start.wait(timeout=30)
    while len(seqs) < n:
        seqs += store.append_feedback(events[len(seqs) : len(seqs) + 1 + len(seqs) % 4])
        time.sleep(0.002)
    return seqs


def _forked_writer(
    store: EventStore, tag: str, parent: sqlite3.Connection, start: threading.Barrier, results: mp.Queue
) -> None:
    seqs = _write_in_batches(store, tag, 200, start)
    results.put((tag, seqs, store._connection() is not parent))


def test_concurrent_processes_and_threads_lose_nothing_and_share_one_sequence(store: EventStore):
    parent = store._connection()
    store.append_feedback([FeedbackEvent("parent", "i", "click")])
    ctx = mp.get_context("fork")  # the children inherit the open store: each must open its own connection
    start, results = ctx.Barrier(5), ctx.Queue()
    procs = [
        ctx.Process(target=_forked_writer, args=(store, f"p{k}", parent, start, results)) for k in range(2)
    ]
    for proc in procs:
        proc.start()
    by_thread: dict[str, list[int]] = {}
    threads = [
        threading.Thread(
            target=lambda t=f"t{k}": by_thread.update({t: _write_in_batches(store, t, 50, start)})
        )
        for k in range(3)
    ]
    for thread in threads:
        thread.start()
    from_children = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for thread in threads:
        thread.join()
    assert all(own for _, _, own in from_children), "a forked child wrote through its parent's connection"
    written = {tag: seqs for tag, seqs, _ in from_children} | by_thread
    assert sorted(written) == ["p0", "p1", "t0", "t1", "t2"]
    every = [seq for seqs in written.values() for seq in seqs]
    assert len(every) == len(set(every)) == 550
    assert store.count() == 551
    log = dict(store.replay())
    for tag, seqs in written.items():
        assert seqs == sorted(seqs)
        assert [log[seq] for seq in seqs] == _writer_events(tag, len(seqs))
    # (Whether the scheduler interleaved the writers is not asserted: on loaded cores it may not, and
    # that says nothing about the store.)


_KILLED_WRITER = """
    import sys
    import numpy as np
    from crossrec.serve.events import FeedbackEvent, ItemRecord
    from crossrec.serve.store import EventStore

    store = EventStore(sys.argv[1])
    batch = 0
    while True:
        seqs = store.append_feedback(
            [FeedbackEvent(f"u{batch}", f"i{j}", "rating", batch + j / 8, batch + 0.5) for j in range(5)]
        )
        seqs.append(store.upsert_item(ItemRecord(f"i{batch}", {"title": f"t{batch}"},
                                                 {"text": np.arange(8, dtype=np.float32) / (batch + 3)})))
        print(batch, *seqs, flush=True)  # printed = acknowledged: both writes have returned
        batch += 1
"""


def _killed_writer_batch(batch: int) -> list[FeedbackEvent | ItemRecord]:
    """What the writer above logs in `batch`, rebuilt independently."""
    feedback = [FeedbackEvent(f"u{batch}", f"i{j}", "rating", batch + j / 8, batch + 0.5) for j in range(5)]
    text = np.arange(8, dtype=np.float32) / (batch + 3)
    return [*feedback, ItemRecord(f"i{batch}", {"title": f"t{batch}"}, {"text": text})]


def test_every_acknowledged_write_survives_kill_9_mid_burst(tmp_path: Path):
    path = tmp_path / "events.db"
    writer = _python(_KILLED_WRITER, str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acknowledged = []
    try:
        assert writer.stdout is not None
        while len(acknowledged) < 40:
            line = writer.stdout.readline()
            assert line, f"the writer stopped: {writer.stderr.read() if writer.stderr else ''}"
            acknowledged.append(line)
        os.kill(writer.pid, signal.SIGKILL)
        rest, _ = writer.communicate(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    acknowledged += rest.splitlines(keepends=True)
    acks = [[int(x) for x in line.split()] for line in acknowledged if line.endswith("\n")]

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with EventStore(path) as store:
        log = dict(store.replay())
        for batch, *seqs in acks:
            assert [log[seq] for seq in seqs] == _killed_writer_batch(batch)
        # transactions are whole: beyond the acknowledged writes at most one more batch and its upsert
        assert len(log) - 6 * len(acks) in (0, 5, 6)
        assert max(log) == store.last_seq() >= acks[-1][-1]
        (next_seq,) = store.append_feedback([FeedbackEvent("u", "i", "click")])
        assert next_seq > max(log)


def test_export_folds_logged_feedback_onto_the_bundle_id_space(store: EventStore):
    store.append_feedback(
        [
            FeedbackEvent("a", "x", "rating", 4.0, 10.7),
            FeedbackEvent("c", "y", "click", 1.0, 11.0),  # a user the bundle never saw
            FeedbackEvent("b", "z", "rating", 2.0, 12.0),  # z is deleted below: left out
        ]
    )
    store.upsert_item(ItemRecord("w", {"title": "new"}))  # a new item
    store.upsert_item(ItemRecord("v", {"title": "gone"}))
    store.delete_item("v")  # new and deleted: never existed for a retrain
    store.delete_item("y")
    store.upsert_item(ItemRecord("y", {"title": "back"}))  # deleted, then back
    store.delete_item("z")
    store.append_feedback(
        [FeedbackEvent("d", "w", "rating", 5.0, 13.0), FeedbackEvent("a", "u", "play", 30.0, 14.0)]
    )

    out = export_interactions(store, np.array(["a", "b"]), ["x", "y", "z"])
    assert out.new_user_ids.tolist() == ["c", "d"]
    assert out.new_item_ids.tolist() == ["w", "u"]
    assert out.deleted_item_ids.tolist() == ["z"]
    inter = out.interactions
    assert (inter.n_users, inter.n_items) == (4, 5)
    assert inter.user.tolist() == [0, 2, 3, 0]
    assert inter.item.tolist() == [0, 1, 3, 4]
    assert inter.value.tolist() == [4.0, 1.0, 5.0, 30.0]
    assert inter.timestamp.tolist() == [10, 11, 13, 14]
    assert out.through_seq == store.last_seq()

    ratings = export_interactions(store, ["a", "b"], ["x", "y", "z"], kinds=("rating",))
    assert ratings.new_user_ids.tolist() == ["d"] and ratings.interactions.value.tolist() == [4.0, 5.0]
    later = export_interactions(store, ["a", "b"], ["x", "y", "z"], after_seq=out.through_seq)
    assert len(later.interactions) == 0 and later.through_seq == out.through_seq
    with pytest.raises(ConfigError, match=r"unknown feedback kinds \['ratings'\]"):
        export_interactions(store, [], [], kinds=("ratings",))
