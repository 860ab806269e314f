"""SpoolHealth: what the spool lost or could not store, for ``status``, ``metrics`` and the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SpoolMode = Literal["disk", "memory"]


@dataclass(frozen=True, slots=True)
class SpoolHealth:
    """Counters of one spool (process lifetime, except ``quarantined_files``, which counts the files on disk).

    ``mode`` is ``"memory"`` while new events cannot be written to disk (full disk, unwritable file): they
    wait in a bounded RAM queue (``events_in_memory``), are still published, and the oldest are dropped
    (``events_dropped_disk_full``) when it is full. ``events_lost`` counts events known to be lost with a
    damaged spool file; ``events_lost_unknown`` says a damaged file could not be counted.
    """

    mode: SpoolMode = "disk"
    quarantined_files: int = 0
    events_lost: int = 0
    events_lost_unknown: bool = False
    events_dropped_disk_full: int = 0
    events_in_memory: int = 0
    last_error: str | None = None

    @property
    def degraded(self) -> bool:
        """True once anything was lost, moved aside or held in memory (the status payload then says so)."""
        return bool(
            self.mode != "disk"
            or self.quarantined_files
            or self.events_lost
            or self.events_lost_unknown
            or self.events_dropped_disk_full
        )

    def as_dict(self) -> dict[str, str | int | bool | None]:
        return {name: getattr(self, name) for name in self.__slots__}
