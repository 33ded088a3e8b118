"""The embedded backend: one SQLite file (stdlib sqlite3), zero setup.

Every call runs on one dedicated thread (a single-thread executor owning the only
connection), so the event loop never blocks on disk and no two statements race. WAL mode
with synchronous=NORMAL: a commit is durable against a crash or kill -9 of the process (only
a power cut can lose the last commits), readers such as `freeapi usage` never block the
gateway, and BEGIN IMMEDIATE makes counters atomic across several processes on one file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from freeapi.rollups import increments
from freeapi.store import (BLOB_PIECE, BUCKETS, LEDGER_FIELDS, Store, StoreError,
                           bucket_width_ms, check_window)
from freeapi.store.admin import SQLiteAdmin
from freeapi.store.sqlite_rollups import (_ROLLUP_ADD, SQLiteRollups, _each, _each_batched,
                                          rollup_rows)
from freeapi.store.sqlite_tallies import SCHEMA as _TALLIES, SQLiteTallies

SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL, bucket INTEGER NOT NULL, amount INTEGER NOT NULL,
    expires INTEGER NOT NULL, PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY, {", ".join(LEDGER_FIELDS)});
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
CREATE TABLE IF NOT EXISTS rollups (
    period TEXT NOT NULL, dim TEXT NOT NULL, start INTEGER NOT NULL, field TEXT NOT NULL,
    amount REAL NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (period, dim, start, field)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_expires ON rollups (expires);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_expires ON conversations (expires);
CREATE TABLE IF NOT EXISTS conversation_turns (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (ns, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE TABLE IF NOT EXISTS kv_groups (
    ns TEXT NOT NULL, grp TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (ns, grp, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_groups_name ON kv_groups (ns, name);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY, ns TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    expires REAL NOT NULL, UNIQUE (ns, name));
CREATE INDEX IF NOT EXISTS blobs_expires ON blobs (expires);
{_TALLIES};
PRAGMA user_version = {SCHEMA_VERSION};
"""
# The raw log's filters (GET /admin/requests), each newest first through one index; made
# after the columns an older file lacks are added.
_LEDGER_INDEXES = """
CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts);
CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts);
CREATE INDEX IF NOT EXISTS ledger_model_ts ON ledger (model, ts);
CREATE INDEX IF NOT EXISTS ledger_status_ts ON ledger (status, ts);
CREATE INDEX IF NOT EXISTS ledger_request_id ON ledger (request_id)
"""
_INSERT = (f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) "
           f"VALUES ({', '.join('?' * len(LEDGER_FIELDS))})")
_SWEEP_EVERY = 60.0  # seconds between sweeps of expired counters and conversations


class SQLiteStore(SQLiteRollups, SQLiteAdmin, SQLiteTallies, Store):
    kind = "sqlite"

    def __init__(self, path: str, timeout: float = 5.0, clock=None):
        super().__init__()
        self.path = path
        self.timeout = timeout
        # The wall clock counters' windows and records' expiry are read from, bound once:
        # time.time, or a test's clock that it moves forward instead of sleeping through
        # a window. (Redis and PostgreSQL read their server's clock instead.)
        self._time = clock if clock is not None else time.time
        self._ex: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._lock = threading.Lock()
        self._swept = 0.0

    def describe(self) -> str:
        return "in memory (SQLite)" if self.path == ":memory:" else f"SQLite {self.path}"

    # -- the thread ---------------------------------------------------------------------

    async def _run(self, fn, *args):
        with self._lock:
            if self._ex is None:
                self._ex = ThreadPoolExecutor(1, thread_name_prefix="freeapi-sqlite")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._ex, self._call,
                                                                    fn, args)
        except sqlite3.Error as e:
            raise StoreError(f"SQLite {self.path}: {e}") from None

    def _call(self, fn, args):
        if self._db is None:
            self._db = self._connect()
        return fn(self._db, *args)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:  # a state error, not the caller's "cannot listen"
                raise sqlite3.OperationalError(f"cannot create the directory {parent}: "
                                               f"{e.strerror or e}") from None
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                             check_same_thread=False)
        try:
            # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at
            # once rather than waiting while another process is doing the same: retry.
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            db.execute("PRAGMA synchronous=NORMAL")

            def schema():
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"written by a newer freeapi (schema "
                                                f"{version})")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                # A file from an older freeapi lacks the ledger fields added since.
                have = {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
                for field in LEDGER_FIELDS:
                    if field not in have:
                        db.execute(f"ALTER TABLE ledger ADD COLUMN {field}")
                for statement in _LEDGER_INDEXES.split(";"):
                    if statement.strip():
                        db.execute(statement)
            self._tx(db, schema)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _tx(db: sqlite3.Connection, fn):
        # IMMEDIATE takes the write lock up front: two processes on one file then serialize
        # whole check-and-add transactions instead of deadlocking on an upgrade.
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return out

    # -- counters -----------------------------------------------------------------------

    async def hits(self, hits):
        return await self._run(self._hits, list(hits))

    def _hits(self, db, hits):
        now = int(self._time() * 1000)

        def tx():
            wait, failed = 0.0, -1
            for i, h in enumerate(hits):
                rows = db.execute("SELECT bucket, amount FROM counters WHERE key = ? AND "
                                  "expires > ?", (h.key, now)).fetchall()
                w = check_window(rows, now, h)
                if w is not None:
                    wait, failed = max(wait, w), failed if failed >= 0 else i
            if failed >= 0:
                return False, wait, failed
            for h in hits:
                if h.amount <= 0:
                    continue
                width = bucket_width_ms(h.window)
                b = now // width
                db.execute("INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT (key, bucket) "
                           "DO UPDATE SET amount = amount + excluded.amount",
                           (h.key, b, h.amount, (b + BUCKETS) * width))
            return True, 0.0, -1

        out = self._tx(db, tx)
        self._sweep(db)
        return out

    def _sweep(self, db):
        # Expired counters of keys nobody asks about any more (yesterday's day counter) and
        # expired conversations go in one sweep a minute, off the hot statements.
        mono = time.monotonic()
        if mono - self._swept < _SWEEP_EVERY:
            return
        self._swept = mono
        now = self._time()

        def tx():
            db.execute("DELETE FROM counters WHERE expires <= ?", (int(now * 1000),))
            db.execute("DELETE FROM tallies WHERE expires <= ?", (int(now * 1000),))
            db.execute("DELETE FROM conversation_turns WHERE conv IN (SELECT id FROM "
                       "conversations WHERE expires <= ?)", (now,))
            db.execute("DELETE FROM conversations WHERE expires <= ?", (now,))
            db.execute("DELETE FROM kv WHERE expires <= ?", (now,))
            db.execute("DELETE FROM blobs WHERE expires <= ?", (now,))
            db.execute("DELETE FROM rollups WHERE expires <= ?", (int(now),))
            db.execute("DELETE FROM kv_groups WHERE NOT EXISTS (SELECT 1 FROM kv WHERE "
                       "kv.ns = kv_groups.ns AND kv.name = kv_groups.name)")
        self._tx(db, tx)

    # -- ledger -------------------------------------------------------------------------

    async def _append(self, entries):
        def tx(db):
            _each_batched(db, _INSERT, [_row(e) for e in entries])
            _each_batched(db, _ROLLUP_ADD, rollup_rows(increments(entries)))

        def write(db):
            # On the store's thread, not the event loop: rows and rollup increments are
            # computed there too.
            self._tx(db, lambda: tx(db))
            self._sweep(db)  # expired rollup buckets go too, limits or not
        await self._run(write)

    async def prune_ledger(self, before):
        return await self._run(lambda db: self._tx(
            db, lambda: db.execute("DELETE FROM ledger WHERE ts < ?", (before,)).rowcount))

    # -- conversations ------------------------------------------------------------------

    async def conversation_get(self, cid, owner):
        def get(db):
            row = db.execute("SELECT owner FROM conversations WHERE id = ? AND expires > ?",
                             (cid, self._time())).fetchone()
            if row is None or row[0] != owner:
                return None
            return [json.loads(d) for (d,) in db.execute(
                "SELECT data FROM conversation_turns WHERE conv = ? ORDER BY seq", (cid,))]
        return await self._run(get)

    async def conversation_append(self, cid, owner, turns, ttl_s, max_turns, max_bytes):
        datas = [json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in turns]

        def append(db):
            now = self._time()
            row = db.execute("SELECT owner, expires FROM conversations WHERE id = ?",
                             (cid,)).fetchone()
            if row is not None and row[1] <= now:  # expired: the id starts afresh
                db.execute("DELETE FROM conversation_turns WHERE conv = ?", (cid,))
                db.execute("DELETE FROM conversations WHERE id = ?", (cid,))
                row = None
            if row is not None and row[0] != owner:
                return False
            db.execute("INSERT INTO conversations VALUES (?, ?, ?) ON CONFLICT (id) DO "
                       "UPDATE SET expires = excluded.expires", (cid, owner, now + ttl_s))
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM conversation_turns WHERE "
                             "conv = ?", (cid,)).fetchone()[0]
            _each(db, "INSERT INTO conversation_turns VALUES (?, ?, ?)",
                  [(cid, seq + i + 1, d) for i, d in enumerate(datas)])
            sizes = db.execute("SELECT seq, length(CAST(data AS BLOB)) FROM "
                               "conversation_turns WHERE conv = ? ORDER BY seq DESC",
                               (cid,)).fetchall()
            total = 0
            for n, (s, size) in enumerate(sizes):  # newest first; the newest always stays
                if n > 0 and (n >= max_turns or total + size > max_bytes):
                    db.execute("DELETE FROM conversation_turns WHERE conv = ? AND seq <= ?",
                               (cid, s))
                    break
                total += size
            return True
        return await self._run(lambda db: self._tx(db, lambda: append(db)))

    async def conversation_delete(self, cid, owner):
        def delete(db):
            row = db.execute("SELECT owner FROM conversations WHERE id = ? AND expires > ?",
                             (cid, self._time())).fetchone()
            if row is None or row[0] != owner:
                return False
            db.execute("DELETE FROM conversation_turns WHERE conv = ?", (cid,))
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))
            return True
        return await self._run(lambda db: self._tx(db, lambda: delete(db)))

    # -- small expiring records (key health, reasoning memory, responses, files) ---------

    @property
    def shared(self):
        return self.path != ":memory:"

    async def kv_put(self, ns, name, value, ttl_s, group=None):
        data = json.dumps(value, separators=(",", ":"))

        def put(db):
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)",
                       (ns, name, data, self._time() + ttl_s))
            if group is not None:
                db.execute("INSERT OR IGNORE INTO kv_groups VALUES (?, ?, ?)",
                           (ns, group, name))
        await self._run(lambda db: self._tx(db, lambda: put(db)))

    async def kv_group(self, ns, group):
        def get(db):
            rows = db.execute("SELECT kv.name, kv.data FROM kv_groups g JOIN kv ON kv.ns = "
                              "g.ns AND kv.name = g.name WHERE g.ns = ? AND g.grp = ? AND "
                              "kv.expires > ?", (ns, group, self._time())).fetchall()
            return {n: json.loads(d) for n, d in rows}
        return await self._run(get)

    async def kv_get(self, ns, names):
        def get(db):
            marks = ", ".join("?" * len(names))
            rows = db.execute(f"SELECT name, data FROM kv WHERE ns = ? AND name IN ({marks}) "
                              "AND expires > ?", (ns, *names, self._time())).fetchall()
            return {n: json.loads(d) for n, d in rows}
        return await self._run(get) if names else {}

    async def kv_delete(self, ns, name):
        def delete(db):
            def tx():
                db.execute("DELETE FROM kv_groups WHERE ns = ? AND name = ?", (ns, name))
                return db.execute("DELETE FROM kv WHERE ns = ? AND name = ? AND expires > ?",
                                  (ns, name, self._time())).rowcount > 0
            return self._tx(db, tx)
        return await self._run(delete)

    # -- file contents: a rowid table, so pieces are read by incremental blob I/O (sqlite3
    # blobopen) without loading the whole value; one piece per call on the store's
    # thread, so other calls run in between. Written in one statement (off the event
    # loop): written piece by piece into a zeroblob, every page would be written twice.

    async def blob_put(self, ns, name, data, ttl_s):
        def put(db):
            def tx():
                db.execute("DELETE FROM blobs WHERE ns = ? AND name = ?", (ns, name))
                db.execute("INSERT INTO blobs (ns, name, data, expires) VALUES (?, ?, ?, ?)",
                           (ns, name, data, self._time() + ttl_s))
            self._tx(db, tx)
        await self._run(put)

    async def blob_read(self, ns, name, offset, size):
        def read(db):
            row = db.execute("SELECT id FROM blobs WHERE ns = ? AND name = ? AND expires > ?",
                             (ns, name, self._time())).fetchone()
            if row is None:
                return b""
            with db.blobopen("blobs", "data", row[0], readonly=True) as blob:
                if offset >= len(blob):
                    return b""
                blob.seek(offset)
                return blob.read(min(size, BLOB_PIECE))
        return await self._run(read)

    async def blob_delete(self, ns, name):
        return await self._run(lambda db: db.execute(
            "DELETE FROM blobs WHERE ns = ? AND name = ?", (ns, name)).rowcount > 0)

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self):
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    def close(self):
        self._stop_flusher()
        with self._lock:
            ex, self._ex = self._ex, None
        if ex is None:
            return

        def shut():
            if self._db is not None:
                self._db.close()
                self._db = None
        ex.submit(shut)
        ex.shutdown(wait=True)  # queued writes finish first: nothing recorded is lost


def _column(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _row(entry: dict) -> tuple:
    """An entry's ledger row; a dict or list value (none in the usual entry) as JSON."""
    row = tuple(map(entry.get, LEDGER_FIELDS))
    kinds = set(map(type, row))
    if dict in kinds or list in kinds:
        return tuple(map(_column, row))
    return row
