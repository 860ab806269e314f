"""An on-disk, bounded, ordered message queue in SQLite: events survive broker outages and restarts.

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives a process
crash (SIGKILL), but may lose the last commits on power loss; door units lose power far more often than
servers, and events are rare (one per track decision), so one fsync per ``put`` is affordable.
``put`` returns only after its transaction is committed.

Bound: at most ``max_events`` messages. When full, the oldest messages are deleted (oldest-first
drop policy) and counted in ``dropped``, which is stored in the database and so persists across restarts.
Ids come from ``AUTOINCREMENT`` and are never reused, so they give the publish order.

A spool file that is not a database any more (SD card damage) is renamed to ``<name>.corrupt-<time>`` and
replaced by an empty one, with an error in the log: the door keeps working.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edgeface.errors import EdgefaceError

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
    " qos INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0)",
)


class SpoolError(EdgefaceError):
    """The spool database cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    created: float


class Spool:
    """A thread-safe persistent FIFO of MQTT messages; use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path, max_events: int) -> None:
        if max_events < 1:
            raise ValueError(f"Spool max_events: must be >= 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                self._db = self._open_fresh(exc)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(
                f"{self.path}: cannot open the MQTT spool ({exc}); check the directory exists "
                "and is writable by the service user"
            ) from exc
        self._trim()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            with _Transaction(db):
                for statement in _SCHEMA:
                    db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def _open_fresh(self, exc: Exception) -> sqlite3.Connection:
        """A corrupt spool (SD card damage) must not stop the door: keep it aside, start an empty one."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
        log.error(
            "MQTT spool %s is corrupt (%s): moved to %s, starting an empty spool", self.path, exc, aside
        )
        return self._open()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def put(self, topic: str, payload: bytes, qos: int) -> int:
        """Append a message; returns its id once the write is committed to disk."""
        if qos not in (0, 1, 2):
            raise ValueError(f"Spool.put qos: must be 0, 1 or 2, got {qos}")
        with self._lock:
            try:
                with self._transaction():
                    cursor = self._db.execute(
                        "INSERT INTO messages (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                        (topic, bytes(payload), qos, time.time()),
                    )
                    self._drop_oldest_locked()
            except sqlite3.Error as exc:
                raise SpoolError(f"{self.path}: cannot write to the MQTT spool ({exc})") from exc
        return int(cursor.lastrowid or 0)

    def _drop_oldest_locked(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()
        excess = int(count) - self.max_events
        if excess <= 0:
            return 0
        self._db.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)", (excess,)
        )
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (excess,))
        log.warning("MQTT spool full (%d messages): dropped the %d oldest", self.max_events, excess)
        return excess

    def _trim(self) -> None:
        """Apply a smaller bound than the one the file was written with."""
        with self._lock, self._transaction():
            self._drop_oldest_locked()

    def pending(self, limit: int, after_id: int = 0) -> list[SpooledMessage]:
        """The oldest ``limit`` messages with id > ``after_id``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, created FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [SpooledMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4])) for r in rows]

    def ack(self, message_id: int) -> bool:
        """Delete an acknowledged message; False if it was already gone (dropped or acked)."""
        return self.ack_many([message_id]) == 1

    def ack_many(self, message_ids: Sequence[int]) -> int:
        """Delete several acknowledged messages in one transaction (one fsync); returns how many existed."""
        with self._lock:
            try:
                with self._transaction():
                    cursor = self._db.executemany(
                        "DELETE FROM messages WHERE id = ?", [(i,) for i in message_ids]
                    )
            except sqlite3.Error as exc:
                raise SpoolError(f"{self.path}: cannot delete from the MQTT spool ({exc})") from exc
        return max(cursor.rowcount, 0)

    @property
    def dropped(self) -> int:
        """Messages dropped by the bound since the spool file was created."""
        with self._lock:
            (value,) = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(value)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
