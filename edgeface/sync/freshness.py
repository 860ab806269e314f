"""The door's side of freshness: keeps the newest valid signed timestamp and says when it goes stale.

`TimestampWatcher.offer(raw)` takes a retained timestamp message (transport thread): its signature is checked
with the door's trust (`verify(record, signature, cert)`), its fleet must be the door's, and it must not be
older than the one held (no rollback). A timer fires when the held record expires, so staleness is reported
even when no message ever arrives again (the point: a dead server or a frozen broker sends nothing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from edgeface.sync.errors import Rejected
from edgeface.sync.throttle import LogLimiter
from edgeface.sync.timestamp import (
    Freshness,
    TimestampRecord,
    freshness,
    parse_timestamp_message,
    parse_timestamp_record,
)

log = logging.getLogger(__name__)

Verify = Callable[[bytes, bytes, "bytes | None"], None]


class TimestampWatcher:
    def __init__(
        self, fleet: str, required: bool, verify: Verify, on_change: Callable[[Freshness], None]
    ) -> None:
        self._fleet, self._required, self._verify, self._on_change = fleet, required, verify, on_change
        self._lock = threading.Lock()
        self._record: TimestampRecord | None = None
        self._timer: threading.Timer | None = None
        self._rejections = LogLimiter(log, what="timestamp rejections")

    @property
    def record(self) -> TimestampRecord | None:
        return self._record

    def current(self, now: datetime | None = None) -> Freshness:
        return freshness(self._record, self._required, now)

    def offer(self, raw: bytes) -> None:
        try:
            message = parse_timestamp_message(raw)
            self._verify(message.record, message.signature, message.cert)
            record = parse_timestamp_record(message.record)
            if record.fleet != self._fleet:
                raise Rejected(
                    "timestamp_invalid", f"timestamp is for fleet {record.fleet!r}, not {self._fleet!r}"
                )
        except Rejected as exc:
            self._rejections.log("timestamp rejected: %s", exc.reason)
            return
        with self._lock:
            held = self._record
            if held is not None and record.issued <= held.issued:
                return  # a re-delivery, or an older record replayed
            self._record = record
            self._arm(record)
        log.debug("timestamp for gallery %d, expires %s", record.version, record.expires)
        self._on_change(self.current())

    def _arm(self, record: TimestampRecord) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = (record.expires - datetime.now(UTC)).total_seconds()
        self._timer = threading.Timer(max(0.0, delay) + 0.05, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def _expired(self) -> None:
        state = self.current()
        if state.stale:
            log.warning("gallery freshness: the newest timestamp expired %s ago", state.age_s)
        self._on_change(state)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._rejections.close()
