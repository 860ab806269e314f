"""What the daemon survived (damaged gallery set aside, reload refused, bundle rejected), for status and metrics.

A short, de-duplicated list of the latest incidents goes into the retained `status`; counts per kind go into
`metrics`. Every detail is made printable and bounded here, once. Thread-safe: the sync worker adds too.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque

from edgeface.mqtt.payloads import Incident
from edgeface.util.logsafe import printable
from edgeface.util.timestamps import rfc3339

log = logging.getLogger(__name__)

MAX_DETAIL = 300


class Incidents:
    def __init__(self, keep: int = 6) -> None:
        self._latest: deque[Incident] = deque(maxlen=keep)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, kind: str, detail: str) -> bool:
        """Record one; False when it repeats the newest one (counted, but the status need not change)."""
        incident = Incident(kind, printable(detail, MAX_DETAIL), rfc3339())
        with self._lock:
            self._counts[kind] += 1
            newest = self._latest[-1] if self._latest else None
            if newest is not None and (newest.kind, newest.detail) == (incident.kind, incident.detail):
                return False
            self._latest.append(incident)
        log.warning("incident %s: %s", kind, incident.detail)
        return True

    def latest(self) -> tuple[Incident, ...]:
        with self._lock:
            return tuple(self._latest)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
