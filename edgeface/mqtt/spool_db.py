"""The SQLite side of the spool: open with a cheap integrity check, classify errors, quarantine, salvage.

Error classes (``sqlite3.Error.sqlite_errorname``, Python 3.11+):

- *full*: ``SQLITE_FULL`` (disk full or ``max_page_count`` reached), ``SQLITE_IOERR_SHMSIZE`` (no room for
  the WAL index), or any ``SQLITE_IOERR*`` while the directory has less than ``LOW_SPACE_BYTES`` free;
  and ``OSError`` ENOSPC/EDQUOT. The file is fine: never quarantine it.
- *damage*: ``SQLITE_CORRUPT*``, ``SQLITE_NOTADB``, other ``SQLITE_IOERR*``, and a failed quick_check.
- anything else (busy, read-only, permissions) is *unavailable*: the caller keeps events in memory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

log = logging.getLogger("edgeface.mqtt.spool")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
    " qos INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0)",
)
LOW_SPACE_BYTES = 1 << 20
QUARANTINE_INFIX = ".corrupt-"
Row = tuple[int, str, bytes, int, float]


class DamagedSpool(sqlite3.DatabaseError):
    """quick_check found damage that no statement reported yet."""


def connect(path: Path, max_pages: int | None) -> sqlite3.Connection:
    """Open (creating if needed) a WAL spool and check every page once (``PRAGMA quick_check``)."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if max_pages is not None:
            db.execute(f"PRAGMA max_page_count={int(max_pages)}")
        quick_check(db)
        with Transaction(db):
            for statement in SCHEMA:
                db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


def quick_check(db: sqlite3.Connection) -> None:
    """Reads every page of the file once (O(size)): catches page damage at start, not at the first trim."""
    rows = db.execute("PRAGMA quick_check(5)").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        raise DamagedSpool("quick_check: " + "; ".join(str(r[0]) for r in rows))


def is_disk_full(exc: BaseException, directory: Path) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name in ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"):
        return True
    return name.startswith("SQLITE_IOERR") and free_bytes(directory) < LOW_SPACE_BYTES


def is_damage(exc: BaseException) -> bool:
    if isinstance(exc, DamagedSpool):
        return True
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR"))


def free_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def salvage(db: sqlite3.Connection) -> tuple[list[Row], int | None]:
    """The rows still readable (a forward then a backward scan, each stopping at the first bad page), and
    the row count if the file can still count them (else None)."""
    found: dict[int, Row] = {}
    for order in ("ASC", "DESC"):
        try:
            for r in db.execute(f"SELECT id, topic, payload, qos, created FROM messages ORDER BY id {order}"):
                found[int(r[0])] = (int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]))
        except (sqlite3.Error, ValueError, TypeError):
            pass
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
        total: int | None = max(int(count), len(found))
    except sqlite3.Error:
        total = None
    return [found[k] for k in sorted(found)], total


def last_sequence(db: sqlite3.Connection) -> int:
    """The last id handed out, if a damaged file still tells (so ids keep increasing in the new one)."""
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    except (sqlite3.Error, ValueError, TypeError):
        return 0
    return int(row[0]) if row else 0


def quarantine(path: Path) -> Path:
    """Rename ``path`` and its -wal/-shm to ``<name>.corrupt-<UTC time>[-n]``; returns the new main name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}{QUARANTINE_INFIX}{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}{QUARANTINE_INFIX}{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(f"{aside}{suffix}")
    return aside


def count_quarantined(path: Path) -> int:
    try:
        names = [p.name for p in path.parent.glob(f"{path.name}{QUARANTINE_INFIX}*")]
    except OSError:
        return 0
    return sum(1 for name in names if not name.endswith(("-wal", "-shm")))


def last_id(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
    return max(int(row[0]) if row else 0, int(top))


def drop_oldest(db: sqlite3.Connection, max_events: int) -> int:
    """Delete the oldest rows beyond ``max_events`` and count them in ``dropped`` (inside a transaction)."""
    (count,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
    excess = int(count) - max_events
    if excess <= 0:
        return 0
    db.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)", (excess,))
    db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (excess,))
    log.warning("MQTT spool full (%d messages): dropped the %d oldest", max_events, excess)
    return excess


def delete(db: sqlite3.Connection, ids: Sequence[int]) -> int:
    """Delete rows by id in one transaction; how many existed."""
    with Transaction(db):
        cursor = db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
    return max(cursor.rowcount, 0)


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                _rollback(self._db)  # a failed COMMIT (disk full) can leave the transaction open
                raise
            return
        _rollback(self._db)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        # the statement's own error is the one to report; SQLite may have rolled back already
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
