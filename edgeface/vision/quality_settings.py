"""What the `[quality]` config section sets: the limits a face must meet before it is embedded.

Apart from `edgeface.vision.quality` (which measures faces with OpenCV) so the config loader stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeface.errors import ConfigError
from edgeface.util.fields import bounded, check_fields


@dataclass(frozen=True, slots=True)
class QualitySettings:
    min_face_px: int = bounded(40, 8, 2000)  # the shorter side of the detector's face box
    min_sharpness: float = bounded(20.0, 0.0)  # variance of the Laplacian of the face region
    max_yaw: float = bounded(0.6, 0.0, 1.0)  # |nose offset from the eye midpoint| / eye distance
    min_brightness: float = bounded(40.0, 0.0, 255.0)  # mean grey level of the face region
    max_brightness: float = bounded(220.0, 0.0, 255.0)

    def __post_init__(self) -> None:
        check_fields(self, "quality")
        if self.min_brightness >= self.max_brightness:
            raise ConfigError("quality.min_brightness: must be below quality.max_brightness")
