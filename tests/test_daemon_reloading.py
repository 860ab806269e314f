"""Which keys a SIGHUP applies and which only a restart applies (edgeface/daemon/reloading.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeface.config import Config, parse_config
from edgeface.daemon.reloading import LIVE_SECTIONS, RESTART_SECTIONS, live_part, restart_keys


def _config(**sections: dict) -> object:
    base = {"device": {"id": "door", "state_dir": "/tmp/ef-state"}, "mqtt": {"host": "broker.lan"}}
    return parse_config(base | sections)


def test_restart_only_keys_are_named_and_kept_while_live_ones_apply() -> None:
    running = _config(match={"threshold": 0.5})
    loaded = _config(
        device={"id": "other", "state_dir": "/tmp/ef-state"},
        mqtt={"host": "broker2.lan", "keepalive": 45},
        camera={"kind": "emulated", "faces": "/tmp"},
        match={"threshold": 0.7},
        gallery={"dir": "/tmp/elsewhere"},
    )
    assert restart_keys(running, loaded) == [
        "device.id",
        "camera",
        "mqtt.host",
        "mqtt.keepalive",
        "gallery.dir",
    ]
    applied = live_part(running, loaded)
    assert applied.device == running.device and applied.mqtt == running.mqtt and applied.camera is None
    assert applied.match.threshold == 0.7 and applied.gallery.dir == running.gallery.dir
    assert applied.mqtt.device == "door" and applied.gallery_dir == Path("/tmp/ef-state/gallery")


def test_a_reload_changing_only_live_keys_needs_no_restart() -> None:
    assert restart_keys(_config(), _config(match={"threshold": 0.6}, metrics={"interval_s": 30})) == []


def test_every_config_section_is_either_live_or_restart_only() -> None:
    """A section added to Config must be placed, or a reload would neither apply it nor name it."""
    sections = {f.name for f in dataclasses.fields(Config)}
    assert set(LIVE_SECTIONS) | set(RESTART_SECTIONS) == sections
    assert not set(LIVE_SECTIONS) & set(RESTART_SECTIONS)
