"""The `[visitors]` config section (light: the config imports it without OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeface.util.fields import bounded, check_fields


@dataclass(frozen=True, slots=True)
class VisitorSettings:
    """The `[visitors]` section."""

    keep: bool = False  # off: no face crop is written to disk
    max_events: int = bounded(20, 1, 500)  # newest decisions kept
    max_age_h: float = bounded(24.0, 0.1, 720.0)  # kept at most this many hours
    crops_per_event: int = bounded(5, 1, 10)  # the last aligned crops of the decision's track

    def __post_init__(self) -> None:
        check_fields(self, "visitors")
