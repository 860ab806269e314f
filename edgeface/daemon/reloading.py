"""What SIGHUP can change while running, and what only a restart applies.

Live: `[gallery]` (but `gallery.dir`, where fleet sync also writes), `[match]`, `[quality]`, `[metrics]`. The other sections are bound at start to things a
reload does not rebuild (the MQTT connection and its client id, topics and spool; the camera; the models;
the fleet key): a reload that changes them keeps their running values and names each changed key, so the
log never says "reloaded" about a value that is not in force.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgeface.config import Config
from edgeface.util.fields import settable

LIVE_SECTIONS = ("gallery", "match", "quality", "metrics")
RESTART_SECTIONS = ("device", "camera", "detector", "embedder", "mqtt", "sync", "homeassistant", "visitors")


def _changed(section: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if old is None or new is None or not dataclasses.is_dataclass(old):
        return [section]
    keys = settable(type(old))
    # fields the file cannot set (mqtt.device, mqtt.spool_path) follow other sections and are named there
    return [f"{section}.{name}" for name in keys if getattr(old, name) != getattr(new, name)]


def restart_keys(running: Config, loaded: Config) -> list[str]:
    """The keys `loaded` changes that take effect only after a restart (empty when none)."""
    keys: list[str] = []
    for section in RESTART_SECTIONS:
        keys += _changed(section, getattr(running, section), getattr(loaded, section))
    if running.gallery.dir != loaded.gallery.dir:
        keys.append("gallery.dir")
    return keys


def live_part(running: Config, loaded: Config) -> Config:
    """`loaded` with every restart-only section kept as it runs now."""
    gallery = dataclasses.replace(loaded.gallery, dir=running.gallery.dir)
    kept = {s: getattr(running, s) for s in RESTART_SECTIONS}
    return dataclasses.replace(loaded, gallery=gallery, **kept)
