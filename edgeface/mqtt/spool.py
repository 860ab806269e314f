"""An on-disk, bounded, ordered message queue in SQLite: events survive broker outages and restarts.

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives a process
crash (SIGKILL), but may lose the last commits on power loss; door units lose power far more often than
servers, and events are rare (one per track decision), so one fsync per ``put`` is affordable.
``put`` returns only after its transaction is committed, unless the disk cannot take it (below).

Bound: at most ``max_events`` messages. When full, the oldest messages are deleted (oldest-first
drop policy) and counted in ``dropped``, which is stored in the database and so persists across restarts.
Ids are assigned here in increasing order, never reused (the last one is kept by ``AUTOINCREMENT``, and
carried over to a recreated file), so they give the publish order.

Damaged or hostile state never stops the door (see ``health()``):

- A damaged file (not a database, a malformed page, an I/O error; found by ``PRAGMA quick_check`` at open
  or by any statement later) is renamed to ``<name>.corrupt-<UTC time>`` with its -wal/-shm, the rows
  still readable are carried into a new empty spool, and the loss is counted and logged.
- A full disk (or an unwritable file) never raises from ``put``: events wait in a bounded RAM queue
  (``memory_events``, oldest dropped and counted), are still handed out by ``pending``, and are moved
  to disk when a retry (every ``retry_s``) succeeds. At open, a full disk starts the spool in memory.

Only a path that cannot hold a spool at all (its parent is a file, no permission) raises ``SpoolError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from edgeface.errors import EdgefaceError
from edgeface.mqtt import spool_db
from edgeface.mqtt.health import SpoolHealth
from edgeface.mqtt.spool_db import Transaction, is_damage, is_disk_full
from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)
T = TypeVar("T")
_SELECT = "SELECT id, topic, payload, qos, created FROM messages"


class SpoolError(EdgefaceError):
    """The spool location cannot hold a database at all (not a directory, no permission)."""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    created: float


class Spool:
    """A thread-safe persistent FIFO of MQTT messages; use as a context manager or call ``close()``."""

    def __init__(
        self,
        path: str | Path,
        max_events: int,
        *,
        memory_events: int = 1000,
        retry_s: float = 5.0,
        max_pages: int | None = None,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"Spool max_events: must be >= 1, got {max_events}")
        if memory_events < 1:
            raise ValueError(f"Spool memory_events: must be >= 1, got {memory_events}")
        self.path = Path(path)
        self.max_events = max_events
        self.memory_events = memory_events
        self.retry_s = retry_s
        self.max_pages = max_pages  # SQLite max_page_count: a size cap, writes beyond it fail as "full"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._memory: deque[SpooledMessage] = deque()
        self._unacked_deletes: set[int] = set()  # acked rows whose DELETE could not be written yet
        self._last_id = 0
        self._id_known = False  # False until a file told the last id: memory ids then start at time in ms
        self._writable = True
        self._retry_at = 0.0
        self._replacing = False
        self._dropped = 0
        self._lost = 0
        self._lost_unknown = False
        self._dropped_full = 0
        self._last_error: str | None = None
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file, once seen
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not is_disk_full(exc, self.path.parent):
                raise self._open_error(exc) from exc
        self._quarantined = spool_db.count_quarantined(self.path)
        with self._lock:
            self._open_locked(first=True)

    def _open_error(self, exc: BaseException) -> SpoolError:
        return SpoolError(
            f"{self.path}: cannot open the MQTT spool ({exc}); check the directory exists "
            "and is writable by the service user"
        )

    # opening, damage and a full disk -------------------------------------------------------------------
    def _open_locked(self, first: bool) -> None:
        try:
            db = spool_db.connect(self.path, self.max_pages)
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc, self.path.parent):
                self._enter_memory_locked(exc, "open")
            elif is_damage(exc):
                self._replace_damaged_locked(exc, "open")
            elif first:
                raise self._open_error(exc) from exc
            else:
                self._enter_memory_locked(exc, "open")
            return
        self._db = db
        self._file_id = None
        self._check_file_locked()  # remembers the file just opened
        top = self._run_locked(spool_db.last_id, "open")
        self._last_id = max(self._last_id, top or 0)
        self._id_known = self._id_known or top is not None
        self._run_locked(lambda db: spool_db.drop_oldest(db, self.max_events), "trim")

    def _run_locked(self, op: Callable[[sqlite3.Connection], T], what: str, retry: bool = True) -> T | None:
        """``op(db)``, or None when it failed: damage replaces the file (then ``op`` is tried once more on the
        new one), anything else (full disk, read-only) switches new events to memory."""
        db = self._db
        if db is None:
            return None
        try:
            return op(db)
        except (sqlite3.Error, OSError) as exc:
            if is_damage(exc) and not is_disk_full(exc, self.path.parent) and not self._replacing:
                self._replace_damaged_locked(exc, what)
                return self._run_locked(op, what, retry=False) if retry else None
            self._enter_memory_locked(exc, what)
            return None

    def _enter_memory_locked(self, exc: BaseException, what: str) -> None:
        self._last_error = printable(f"{what}: {exc}")
        self._retry_at = time.monotonic() + self.retry_s
        if self._writable:
            log.warning(
                "MQTT spool %s: cannot %s (%s); new events are held in memory (up to %d) and still "
                "published; retrying the disk every %.0f s",
                self.path,
                what,
                printable(exc),
                self.memory_events,
                self.retry_s,
            )
        self._writable = False

    def _replace_damaged_locked(self, exc: BaseException, what: str) -> None:
        """Salvage readable rows, move the file aside, start a new one with them; count and log the loss."""
        self._replacing = True
        try:
            rows, total = self._salvage_locked()
            try:
                aside = spool_db.quarantine(self.path)
            except OSError as move_exc:
                self._enter_memory_locked(move_exc, "move the damaged spool aside")
                return
            self._quarantined += 1
            self._last_error = printable(f"{what}: {exc}")
            lost = None if total is None else max(total - len(rows), 0)
            if lost is None:
                self._lost_unknown = True
            else:
                self._lost += lost
            log.warning(
                "MQTT spool %s is corrupt (%s during %s): moved to %s; %s event(s) lost, %d salvaged; "
                "continuing with a new spool",
                self.path,
                printable(exc),
                what,
                aside.name,
                "an unknown number of" if lost is None else lost,
                len(rows),
            )
            self._open_fresh_locked([SpooledMessage(*row) for row in rows])
        finally:
            self._replacing = False

    def _salvage_locked(self) -> tuple[list[spool_db.Row], int | None]:
        db, self._db = self._db, None
        try:
            if db is None:
                if not self.path.exists():
                    return [], 0
                db = sqlite3.connect(self.path, check_same_thread=False)
            self._last_id = max(self._last_id, spool_db.last_sequence(db))
            self._id_known = True
            return spool_db.salvage(db)
        except (sqlite3.Error, OSError):
            return [], None
        finally:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._unacked_deletes.clear()

    def _open_fresh_locked(self, salvaged: list[SpooledMessage]) -> None:
        self._file_id = None
        try:
            self._db = spool_db.connect(self.path, self.max_pages)
        except (sqlite3.Error, OSError) as exc:
            self._db = None
            self._enter_memory_locked(exc, "recreate")
        self._last_id = max([self._last_id, *(m.id for m in salvaged)])
        if self._db is not None:
            self._run_locked(lambda db: db.execute(_SET_SEQUENCE, (self._last_id,)), "recreate", retry=False)
            if not salvaged or self._run_locked(lambda db: self._write(db, salvaged), "restore", retry=False):
                return
        self._remember_locked(salvaged)

    def _disk_due_locked(self) -> bool:
        """May this call write to disk? True while writable; in memory mode, once per ``retry_s``."""
        if self._writable and self._db is not None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self.retry_s
        if self._db is None:
            self._open_locked(first=False)
        return self._db is not None

    def _flush_memory_locked(self, extra: list[SpooledMessage]) -> bool:
        """Write the memory backlog and ``extra`` in one transaction; on success, back to disk mode."""
        top = self._run_locked(spool_db.last_id, "read") or 0
        keep = [m for m in self._memory if m.id <= top]  # ids given before the file was readable stay here
        batch = [m for m in self._memory if m.id > top] + extra
        if not self._run_locked(lambda db: self._write(db, batch), "write"):
            return False
        if len(batch) > len(extra):
            log.info(
                "MQTT spool %s: writable again; %d event(s) moved from memory",
                self.path,
                len(batch) - len(extra),
            )
        self._memory = deque(keep)
        self._writable = True
        return True

    def _remember_locked(self, messages: Iterable[SpooledMessage]) -> None:
        merged = sorted([*self._memory, *messages], key=lambda m: m.id)
        excess = max(len(merged) - self.memory_events, 0)
        if excess:
            if self._dropped_full == 0 or (self._dropped_full + excess) // 100 > self._dropped_full // 100:
                log.warning(
                    "MQTT spool %s: memory queue full (%d events): dropped the %d oldest (%d in all)",
                    self.path,
                    self.memory_events,
                    excess,
                    self._dropped_full + excess,
                )
            self._dropped_full += excess
        self._memory = deque(merged[excess:])

    # the queue ------------------------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int) -> int:
        """Append a message; returns its id once committed to disk, or once held in memory when the
        disk cannot take it (``health().mode == "memory"``). Never raises for a disk problem."""
        if qos not in (0, 1, 2):
            raise ValueError(f"Spool.put qos: must be 0, 1 or 2, got {qos}")
        with self._lock:
            if not self._id_known and self._last_id == 0:
                self._last_id = int(time.time() * 1000)  # above any id a spool file of ours can hold
            self._last_id += 1
            message = SpooledMessage(self._last_id, topic, bytes(payload), qos, time.time())
            if not (self._disk_due_locked() and self._flush_memory_locked([message])):
                self._remember_locked([message])
        return message.id

    def maintain(self) -> None:
        """Retry the disk when due (moves held events to it); call now and then, e.g. from a sender loop.
        Also notices a spool file deleted while open (the state directory removed): its events would go
        with the last handle, so they are written to a new file at the same path."""
        with self._lock:
            self._check_file_locked()
            if (self._memory or self._unacked_deletes or self._db is None) and self._disk_due_locked():
                self._flush_memory_locked([])

    def _check_file_locked(self) -> None:
        if self._db is None:
            self._file_id = None
            return
        try:
            stat = os.stat(self.path)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except OSError:
            current = None
        if self._file_id is None and current is not None:
            self._file_id = current  # the file this connection opened
            return
        if current is not None and current == self._file_id:
            return
        rows, _ = self._salvage_locked()  # the open handle still reads the unlinked file
        log.error(
            "MQTT spool %s was deleted or replaced while running; recreating it with its %d pending event(s)",
            self.path,
            len(rows),
        )
        self._file_id = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._enter_memory_locked(exc, "recreate the state directory")
            self._remember_locked([SpooledMessage(*row) for row in rows])
            return
        self._open_fresh_locked([SpooledMessage(*row) for row in rows])

    def _write(self, db: sqlite3.Connection, messages: Sequence[SpooledMessage]) -> bool:
        with Transaction(db):
            if self._unacked_deletes:
                db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in self._unacked_deletes])
            db.executemany(
                "INSERT INTO messages (id, topic, payload, qos, created) VALUES (?, ?, ?, ?, ?)",
                [(m.id, m.topic, m.payload, m.qos, m.created) for m in messages],
            )
            spool_db.drop_oldest(db, self.max_events)
        self._unacked_deletes.clear()
        return True

    def pending(self, limit: int, after_id: int = 0, exclude: Iterable[int] = ()) -> list[SpooledMessage]:
        """The oldest ``limit`` messages with id > ``after_id`` and not in ``exclude`` (e.g. in flight), in
        order, disk and memory together."""
        with self._lock:
            skip = self._unacked_deletes | set(exclude)
            query = f"{_SELECT} WHERE id > ? ORDER BY id LIMIT ?"
            rows = self._run_locked(
                lambda db: db.execute(query, (after_id, limit + len(skip))).fetchall(), "read"
            )
            found = [
                SpooledMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4])) for r in rows or ()
            ]
            found = [m for m in found if m.id not in skip]
            found += [m for m in self._memory if m.id > after_id]
        return sorted(found, key=lambda m: m.id)[:limit]

    def ack(self, message_id: int) -> bool:
        """Delete an acknowledged message; False if it was already gone (dropped or acked)."""
        return self.ack_many([message_id]) == 1

    def ack_many(self, message_ids: Sequence[int]) -> int:
        """Delete several acknowledged messages in one transaction (one fsync); returns how many existed."""
        wanted = set(message_ids)
        with self._lock:
            held = len(self._memory)
            self._memory = deque(m for m in self._memory if m.id not in wanted)
            found = held - len(self._memory)
            on_disk = sorted(wanted - self._unacked_deletes)
            if not on_disk or self._db is None:
                return found
            deleted = self._run_locked(lambda db: spool_db.delete(db, on_disk), "delete")
            if deleted is None and self._db is not None:  # not written (full disk): hide them, delete later
                self._unacked_deletes.update(on_disk)
                return found + len(on_disk)
        return found + (deleted or 0)

    @property
    def dropped(self) -> int:
        """Messages dropped by the bound since the spool file was created."""
        with self._lock:
            row = self._run_locked(lambda db: db.execute(_SELECT_DROPPED).fetchone(), "read")
            if row is not None:
                self._dropped = int(row[0])
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            row = self._run_locked(lambda db: db.execute("SELECT COUNT(*) FROM messages").fetchone(), "read")
            on_disk = int(row[0]) - len(self._unacked_deletes) if row is not None else 0
            return max(on_disk, 0) + len(self._memory)

    def health(self) -> SpoolHealth:
        with self._lock:
            return SpoolHealth(
                mode="disk" if self._writable and self._db is not None else "memory",
                quarantined_files=self._quarantined,
                events_lost=self._lost,
                events_lost_unknown=self._lost_unknown,
                events_dropped_disk_full=self._dropped_full,
                events_in_memory=len(self._memory),
                last_error=self._last_error,
            )

    def close(self) -> None:
        with self._lock:
            if self._memory and self._db is not None:
                self._flush_memory_locked([])
            if self._memory:
                log.warning(
                    "MQTT spool %s: %d event(s) held in memory are lost at exit", self.path, len(self._memory)
                )
                self._lost += len(self._memory)
                self._memory.clear()
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_SELECT_DROPPED = "SELECT value FROM counters WHERE name = 'dropped'"
_SET_SEQUENCE = (
    "INSERT OR REPLACE INTO sqlite_sequence (rowid, name, seq) VALUES "
    "((SELECT rowid FROM sqlite_sequence WHERE name = 'messages'), 'messages', ?)"
)
