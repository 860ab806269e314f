"""Opt-in keeping of the aligned face crops of the door's last decisions, so a visitor can be enrolled later.

Off by default (`[visitors] keep`). Each kept decision is one directory ``<state_dir>/visitors/<event_id>/``
with ``visitor.json`` and lossless ``crop-N.png`` files (the aligned crops the embedder saw, never the frame);
it is written under a temporary name and renamed, so a power cut leaves a whole entry or none. At most
`max_events` entries younger than `max_age_h` hours are kept; older ones are deleted on every write and
every listing. An unreadable entry is skipped with a warning and deleted with the next prune.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.pipeline.visitor_settings import VisitorSettings
from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)

VISITORS_DIR = "visitors"
META = "visitor.json"
_EVENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class KeptVisitor:
    event_id: str
    ts: str  # the event's RFC 3339 time
    saved: float  # wall-clock seconds when kept
    decision: str
    identity: str | None
    score: float
    crops: int
    path: Path


def check_event_id(event_id: str) -> str:
    if not _EVENT_ID.fullmatch(event_id):
        raise EdgefaceError(
            f"--from-event: {printable(event_id, 80)!r} is not an event id (a lowercase uuid)"
        )
    return event_id


class VisitorStore:
    def __init__(self, state_dir: Path, settings: VisitorSettings) -> None:
        self.root = Path(state_dir) / VISITORS_DIR
        self.settings = settings

    def keep(
        self,
        event_id: str,
        ts: str,
        decision: str,
        identity: str | None,
        score: float,
        crops: list[np.ndarray],
    ) -> Path | None:
        """Write one decision's crops (the newest `crops_per_event`); None (logged) if the disk refuses."""
        check_event_id(event_id)
        chosen = crops[-self.settings.crops_per_event :]
        if not chosen:
            return None
        target = self.root / event_id
        staging = self.root / f".tmp-{event_id}"
        meta = {"event_id": event_id, "ts": ts, "saved": time.time(), "decision": decision,
                "identity": identity, "score": float(score), "crops": len(chosen)}  # fmt: skip
        try:
            staging.mkdir(parents=True, exist_ok=True)
            for n, crop in enumerate(chosen):
                ok, data = cv2.imencode(".png", np.ascontiguousarray(crop))
                if not ok:
                    raise OSError(f"cannot encode crop {n}")
                (staging / f"crop-{n}.png").write_bytes(data.tobytes())
            (staging / META).write_text(json.dumps(meta))
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            log.warning("visitors: could not keep event %s: %s", event_id, printable(exc))
            return None
        self.prune()
        return target

    def prune(self) -> None:
        """Delete entries beyond `max_events`, older than `max_age_h`, unreadable, or left half-written."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - self.settings.max_age_h * 3600
        kept = self._read_all(warn=False)
        young = sorted((v for v in kept if v.saved >= cutoff), key=lambda v: v.saved, reverse=True)
        keep = {v.path.name for v in young[: self.settings.max_events]}
        for entry in self.root.iterdir():
            if entry.name in keep or (entry.name.startswith(".") and _age_s(entry) < 3600):
                continue  # a staging directory being written now
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def kept(self) -> list[KeptVisitor]:
        """What is kept, newest first (after pruning)."""
        self.prune()
        return sorted(self._read_all(warn=True), key=lambda v: v.saved, reverse=True)

    def crops(self, event_id: str) -> list[np.ndarray]:
        """The crops kept for `event_id`; EdgefaceError (one line) when there are none."""
        entry = self.root / check_event_id(event_id)
        visitor = _read_entry(entry)
        if visitor is None:
            raise EdgefaceError(f"--from-event {event_id}: not kept under {self.root} (see `gallery events`)")
        images = [cv2.imread(str(entry / f"crop-{n}.png"), cv2.IMREAD_COLOR) for n in range(visitor.crops)]
        if any(image is None for image in images):
            raise EdgefaceError(f"--from-event {event_id}: a kept crop is unreadable under {entry}")
        return [image for image in images if image is not None]

    def forget(self, identity: str) -> int:
        """Delete every kept decision matched to `identity` (erasure); how many were deleted."""
        gone = [v for v in self._read_all(warn=False) if v.identity == identity]
        for visitor in gone:
            shutil.rmtree(visitor.path, ignore_errors=True)
        return len(gone)

    def _read_all(self, warn: bool) -> list[KeptVisitor]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in self.root.iterdir():
            if entry.name.startswith("."):
                continue
            visitor = _read_entry(entry)
            if visitor is None and warn:
                log.warning("visitors: %s is unreadable; it is deleted with the next prune", entry)
            if visitor is not None:
                out.append(visitor)
        return out


def _read_entry(entry: Path) -> KeptVisitor | None:
    try:
        meta = json.loads((entry / META).read_text())
        return KeptVisitor(
            str(meta["event_id"]), str(meta["ts"]), float(meta["saved"]), str(meta["decision"]),
            None if meta["identity"] is None else str(meta["identity"]), float(meta["score"]),
            int(meta["crops"]), entry,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
