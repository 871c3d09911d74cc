"""The serving layer's durable event log: feedback and catalogue changes in one SQLite file (WAL mode).

A write is acknowledged only once its transaction has committed with synchronous=FULL, so whatever a
client was told had succeeded survives a crash of the server (kill -9 included) and is replayed into
memory on the next start. Every event takes the next number of one increasing sequence, so a server or a
retrain can say exactly how far it has read (`replay(after_seq)`, `export_interactions`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from crossrec.errors import DataError
from crossrec.serve.events import FEEDBACK_KINDS, FeedbackEvent, ItemDeleted, ItemRecord, Logged

SCHEMA_VERSION = 1
T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    # The one sequence: an event takes the next seq here; its content lives in the table of its type.
    """CREATE TABLE log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL CHECK (type IN ('feedback', 'item')))""",
    f"""CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY REFERENCES log (seq),
        user_id TEXT NOT NULL CHECK (user_id <> ''),
        item_id TEXT NOT NULL CHECK (item_id <> ''),
        kind TEXT NOT NULL CHECK (kind IN ({", ".join(f"'{k}'" for k in FEEDBACK_KINDS)})),
        value REAL NOT NULL,
        ts REAL NOT NULL)""",
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY REFERENCES log (seq),
        item_id TEXT NOT NULL CHECK (item_id <> ''),
        payload TEXT CHECK (payload IS NULL OR json_valid(payload)),
        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        CHECK ((deleted = 1) = (payload IS NULL)))""",
    # One row per modality of an upsert: `dim` little-endian float32 values, so the bytes read back are
    # exactly the bytes written.
    """CREATE TABLE item_vectors (
        seq INTEGER NOT NULL REFERENCES items (seq),
        modality TEXT NOT NULL CHECK (modality <> ''),
        dim INTEGER NOT NULL CHECK (dim > 0),
        data BLOB NOT NULL CHECK (length(data) = 4 * dim),
        PRIMARY KEY (seq, modality))""",
)


_PAGE = """
    SELECT log.seq, log.type, f.user_id, f.item_id, f.kind, f.value, f.ts, i.item_id, i.payload, i.deleted
    FROM log
    LEFT JOIN feedback AS f ON f.seq = log.seq
    LEFT JOIN items AS i ON i.seq = log.seq
    WHERE log.seq > ? ORDER BY log.seq LIMIT ?"""


class EventStore:
    """The append-only event log in the SQLite file at `path` (created when missing).

    Safe to share between the threads of a server and between processes: each thread (and each process,
    forked or not) uses its own connection, and every write is one IMMEDIATE transaction, which takes the
    write lock up front, so SQLITE_BUSY is met (and retried, up to `busy_timeout_s` in all) at BEGIN, never
    halfway through a transaction. Readers never wait for writers (WAL). A write that returns has
    committed and is on disk (synchronous=FULL): that is the acknowledgement. Past the busy timeout a
    write raises TimeoutError naming the file.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._pid = os.getpid()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self._retrying(self._open)
        except sqlite3.DatabaseError as e:
            self.close()
            raise DataError(f"cannot be used as an event store: {e}", file=self.path) from e
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; call it once no thread uses the store any more."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection: SQLite connections are not to be shared by threads nor carried over a
        fork. (check_same_thread is off only so that `close` can close the other threads' connections.)"""
        if os.getpid() != self._pid:  # a forked child: the parent's connections are not ours to use or close
            self._pid = os.getpid()
            self._local, self._lock, self._connections = threading.local(), threading.Lock(), []
        if self._closed:
            raise RuntimeError(f"the event store {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _retrying(self, action: Callable[[], T]) -> T:
        """`action`, retried on SQLITE_BUSY until the busy timeout is spent. SQLite's busy handler waits out
        most contention itself, but not all: while another connection switches a new file to WAL, say,
        statements fail with SQLITE_BUSY at once."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return action()
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"the event store {self.path} stayed locked by another connection for "
                        f"{self.busy_timeout_s} s"
                    ) from e
            time.sleep(0.005)

    def _open(self) -> None:
        """Switch the file to WAL and check its schema, creating it in an empty file. Reads first, so that
        opening a store never waits for writers; writes only to create the schema."""
        conn = self._connection()
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise DataError(
                f"SQLite cannot use write-ahead logging here (journal mode stays {mode!r}): "
                "put the event store on a local disk",
                file=self.path,
            )
        if not self._has_schema(conn):
            with self._transaction() as conn:
                if not self._has_schema(conn):  # nobody created it meanwhile
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed before the caller gets control back."""
        conn = self._connection()
        self._retrying(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT leaves the transaction open
                conn.execute("ROLLBACK")
            raise

    def _has_schema(self, conn: sqlite3.Connection) -> bool:
        """True for a store of this schema version, False for an empty file; refuses anything else."""
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise DataError(
                    f"not a crossrec event store: it holds tables {sorted(tables)} and no schema_version",
                    file=self.path,
                )
            return False
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        if versions != [SCHEMA_VERSION]:
            found = versions[0] if len(versions) == 1 else versions
            raise DataError(
                f"event store schema version {found}; this crossrec reads version {SCHEMA_VERSION} only",
                file=self.path,
            )
        return True

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, kind: str) -> int:
        seq = conn.execute("INSERT INTO log (type) VALUES (?)", (kind,)).lastrowid
        assert seq is not None
        return seq

    def append_feedback(self, events: Sequence[FeedbackEvent]) -> list[int]:
        """Log a batch in one transaction; returning is the acknowledgement. The seqs returned are
        consecutive, in the batch's order."""
        for i, event in enumerate(events):
            if not isinstance(event, FeedbackEvent):
                raise TypeError(f"events[{i}] is a {type(event).__name__}, not a FeedbackEvent")
        if not events:
            return []
        with self._transaction() as conn:
            seqs = [self._next_seq(conn, "feedback") for _ in events]
            conn.executemany(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
                [(s, e.user_id, e.item_id, e.kind, e.value, e.ts) for s, e in zip(seqs, events, strict=True)],
            )
        return seqs

    def upsert_item(self, item: ItemRecord) -> int:
        """Log an item's new state (added or replaced) with its vectors; returns its seq once on disk."""
        if not isinstance(item, ItemRecord):
            raise TypeError(f"expected an ItemRecord, got a {type(item).__name__}")
        with self._transaction() as conn:
            seq = self._next_seq(conn, "item")
            conn.execute(
                "INSERT INTO items VALUES (?, ?, ?, 0)",
                (seq, item.item_id, json.dumps(item.payload, ensure_ascii=False)),
            )
            conn.executemany(
                "INSERT INTO item_vectors VALUES (?, ?, ?, ?)",
                [(seq, name, len(v), v.astype("<f4").tobytes()) for name, v in item.vectors.items()],
            )
        return seq

    def delete_item(self, item_id: str) -> int:
        """Log an item's removal; returns its seq once on disk. Items of the bundle were never upserted
        here, so an id the log has not seen is logged all the same."""
        ItemDeleted(item_id)  # validates the id
        with self._transaction() as conn:
            seq = self._next_seq(conn, "item")
            conn.execute("INSERT INTO items VALUES (?, ?, NULL, 1)", (seq, item_id))
        return seq

    def last_seq(self) -> int:
        """The seq of the newest event (0 for an empty log)."""
        return self._connection().execute("SELECT coalesce(max(seq), 0) FROM log").fetchone()[0]

    def count(self) -> int:
        """How many events the log holds."""
        return self._connection().execute("SELECT count(*) FROM log").fetchone()[0]

    def replay(self, after_seq: int = 0, *, page: int = 1000) -> Iterator[Logged]:
        """Every event with seq > `after_seq`, in seq order, feedback and items interleaved. Read `page`
        events at a time, so no read snapshot stays open while the caller works; events committed meanwhile
        are included (writers hold the write lock while they take a seq, so they commit in seq order and a
        page never skips one)."""
        while True:
            conn = self._connection()  # per page: the caller may resume the iterator on another thread
            rows = conn.execute(_PAGE, (after_seq, page)).fetchall()
            if not rows:
                return
            vectors: defaultdict[int, dict[str, np.ndarray]] = defaultdict(dict)
            for seq, modality, data in conn.execute(
                "SELECT seq, modality, data FROM item_vectors WHERE seq > ? AND seq <= ? ORDER BY seq, rowid",
                (after_seq, rows[-1][0]),
            ):
                vectors[seq][modality] = np.frombuffer(data, dtype="<f4")
            for seq, kind, user_id, f_item, f_kind, value, ts, i_item, payload, deleted in rows:
                if kind == "feedback":
                    yield Logged(seq, FeedbackEvent(user_id, f_item, f_kind, value, ts))
                elif deleted:
                    yield Logged(seq, ItemDeleted(i_item))
                else:
                    yield Logged(seq, ItemRecord(i_item, json.loads(payload), vectors.get(seq, {})))
            after_seq = rows[-1][0]
