"""The `[homeassistant]` config section (light: the config imports it without paho)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeface.util.fields import bounded, check_fields

_URL = re.compile(r"https?://[^\s\"'<>]{1,200}")


def _url(value: str) -> None:
    if value and not _URL.fullmatch(value):
        raise ValueError(f"must be empty or an http(s):// URL without spaces, got {value[:80]!r}")


@dataclass(frozen=True, slots=True)
class HomeAssistantSettings:
    """The `[homeassistant]` section (discovery itself is switched on by `[mqtt] ha_discovery`)."""

    # A person's presence turns off this long after the door last recognised them.
    presence_timeout_s: float = bounded(120.0, 1.0, 86_400.0)
    configuration_url: str = bounded("", check=_url)  # shown on the HA device page when set
    # Off by default: when on, a JPEG of the aligned face crop (never the frame) leaves the device.
    snapshot: bool = False
    snapshot_px: int = bounded(112, 32, 256)  # longer side of the JPEG, pixels
    snapshot_max_bytes: int = bounded(16_384, 1024, 131_072)  # larger JPEGs are not sent
    snapshot_interval_s: float = bounded(5.0, 0.5, 3600.0)  # at most one snapshot per this many seconds

    def __post_init__(self) -> None:
        check_fields(self, "homeassistant")
