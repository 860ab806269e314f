"""Export face-embedding networks to the int8 TFLite models (and cards) that the device runs.

Modules: `quantize` (Keras -> float32 / full-integer int8 TFLite), `calibration` (real aligned crops made
with the device's own detector and aligner), `fidelity` (float-vs-int8 gate and speed), `cards` (model
cards), `facerecnet` (the face-api.js recognition net rebuilt in Keras), `cli` (`edgeface-export`).
"""

from edgeface.errors import EdgefaceError


class ExportError(EdgefaceError):
    """An export step failed or its result did not pass a check; the message says which and by how much."""


__all__ = ["ExportError"]
