"""What the `[match]` config section sets: when a track is decided and re-checked, how often an identity is
announced, and (rarely) a threshold or margin that overrides the gallery's own calibration.

Apart from `edgeface.pipeline.recognize` so the config loader stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeface.util.fields import bounded, check_fields


@dataclass(frozen=True, slots=True)
class MatchSettings:
    # None: the gallery's own calibration (made when it was enrolled or built), else the card's fallback.
    threshold: float | None = bounded(None, -1.0, 1.0)
    margin: float | None = bounded(None, 0.0, 1.0)
    min_frames: int = bounded(3, 1, 100)  # good faces a track is decided on
    max_wait_ms: int = bounded(1500, 50, 60_000)  # ... or fewer, once the track is this old
    cooldown_s: float = bounded(10.0, 0.0, 3600.0)  # the same identity is not announced again within this
    # A track decided `unknown` is searched again this often while its person stays (better frames may come).
    recheck_s: float = bounded(1.0, 0.1, 60.0)
    # A decided track's face is compared with the face it was decided on this often; a different person
    # standing in the same spot gets a fresh decision.
    reverify_s: float = bounded(1.0, 0.1, 60.0)

    def __post_init__(self) -> None:
        check_fields(self, "match")

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000
