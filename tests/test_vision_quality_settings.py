"""`QualitySettings`, the `[quality]` section: defaults, limits, and brightness bounds in order."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeface.errors import ConfigError
from edgeface.vision.quality_settings import QualitySettings


def test_defaults_are_valid() -> None:
    settings = QualitySettings()
    assert settings.min_brightness < settings.max_brightness and settings.min_face_px >= 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_face_px": 7}, r"quality\.min_face_px: must be in \[8, 2000\]"),
        ({"max_yaw": 1.5}, r"quality\.max_yaw: must be in \[0, 1\]"),
        ({"min_sharpness": -1.0}, r"quality\.min_sharpness: must be in \[0, inf\]"),
        ({"max_brightness": 256.0}, r"quality\.max_brightness: must be in \[0, 255\]"),
        ({"min_brightness": 120.0, "max_brightness": 120.0}, r"quality\.min_brightness: must be below"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        QualitySettings(**kwargs)


def test_importing_the_settings_pulls_in_no_opencv() -> None:
    code = "import sys, edgeface.vision.quality_settings; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
