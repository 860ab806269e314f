"""Which decisions become events: one per track decision, no repeats within the cooldown (docs/design.md §5).

- The same identity on the same camera is not re-announced within `cooldown_s`.
- A stranger whose track breaks and re-forms is not re-announced within `cooldown_s` either: a new
  `unknown` whose face matches a recently announced stranger's (cosine at or above the decision threshold)
  on the same camera is held back.
- A correction (a track's `unknown` that became a `match`) names the event it corrects.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from edgeface.pipeline.recognize import Recognition

MAX_REMEMBERED = 1024  # tracks whose last event id is kept, for corrections


@dataclass(frozen=True, slots=True)
class AnnounceVerdict:
    """The announcer's verdict on one decision: publish it or not (and why not), and which event it corrects."""

    announce: bool
    corrects: str | None = None  # event id of the `unknown` this match corrects
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Stranger:
    camera: str
    embedding: np.ndarray
    at: float


class Announcer:
    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._identities: dict[tuple[str, str], float] = {}
        self._strangers: list[_Stranger] = []
        self._events: OrderedDict[tuple[str, int], str] = OrderedDict()

    def consider(self, recognition: Recognition, now: float) -> AnnounceVerdict:
        """Whether to announce `recognition`; call `announced` with the event id when it is published."""
        self._forget(now)
        corrects = self._events.get((recognition.camera, recognition.track_id))
        identity = recognition.match.identity
        if identity is not None:
            if recognition.kind == "correction" and corrects is not None:
                return AnnounceVerdict(True, corrects)
            last = self._identities.get((recognition.camera, identity.id))
            if last is not None and now - last < self.cooldown_s:
                return AnnounceVerdict(False, reason=f"{identity.id} again within the cooldown")
            return AnnounceVerdict(True)
        threshold = recognition.match.threshold
        for stranger in self._strangers:
            if (
                stranger.camera == recognition.camera
                and float(stranger.embedding @ recognition.embedding) >= threshold
            ):
                return AnnounceVerdict(False, reason="the same stranger again within the cooldown")
        return AnnounceVerdict(True)

    def announced(self, recognition: Recognition, event_id: str, now: float) -> None:
        identity = recognition.match.identity
        if identity is not None:
            self._identities[(recognition.camera, identity.id)] = now
        else:
            self._strangers.append(_Stranger(recognition.camera, recognition.embedding, now))
        self._events[(recognition.camera, recognition.track_id)] = event_id
        self._events.move_to_end((recognition.camera, recognition.track_id))
        while len(self._events) > MAX_REMEMBERED:
            self._events.popitem(last=False)

    def _forget(self, now: float) -> None:
        self._strangers = [s for s in self._strangers if now - s.at < self.cooldown_s]
        self._identities = {k: t for k, t in self._identities.items() if now - t < self.cooldown_s}
