"""Fleet sync end to end: two daemons on emulated frames follow gallery N -> N+1 published by the server CLI.

Version 1 enrolls baejun, chipu and khanh; version 2 removes baejun and adds sontung. Both doors must run
version 2, after which baejun is `unknown` (never matched) and sontung is matched. Waits are for events, never
for a fixed time: the cameras loop over the scene until each door has shown what the test needs (how fast
doors follow a new version is measured by bench/fleet.py, not asserted here).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edgeface.camera.emulated import EmulatedSource
from edgeface.cli import main
from edgeface.config import parse_config
from edgeface.daemon.service import Daemon
from edgeface.demo.scenario import build_scenario
from edgeface.vision.detect import FaceDetector
from tests.event_schema import validate
from tests.factories import people_folder


def build_and_publish(tmp: Path, port: int, folders: Path, version: int) -> None:
    bundle = tmp / f"v{version}.bundle"
    assert main(["gallery", "build", "--folders", str(folders), "--fleet", "lobby", "--version", str(version),
                 "--largest-face", "--key", str(tmp / "fleet.pem"), "--out", str(bundle)]) == 0  # fmt: skip
    assert main(["gallery", "publish", "--broker", f"127.0.0.1:{port}", "--fleet", "lobby", str(bundle)]) == 0


def wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _on(events: list[dict], door: str, version: int, since: float) -> list[dict]:
    return [
        e
        for e in list(events)
        if e["device"] == door and e["gallery_version"] == version and e["_at"] > since
    ]


def matched(events: list[dict], door: str, version: int, since: float) -> set[str]:
    return {e["identity"]["id"] for e in _on(events, door, version, since) if e["decision"] == "match"}


def unknowns(events: list[dict], door: str, version: int, since: float) -> int:
    return sum(e["decision"] == "unknown" for e in _on(events, door, version, since))


def test_two_doors_follow_version_n_then_n_plus_1(broker, tmp_path, faces5, models_dir) -> None:
    scenario = build_scenario(faces5, FaceDetector(models_dir), strangers=1, shown_per_person=1)
    assert (
        main(
            [
                "gallery",
                "keygen",
                "--private",
                str(tmp_path / "fleet.pem"),
                "--public",
                str(tmp_path / "fleet.pub"),
            ]
        )
        == 0
    )
    events: list[dict] = []
    viewer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-viewer")
    viewer.on_message = lambda c, u, m: events.append(json.loads(m.payload) | {"_at": time.monotonic()})
    viewer.connect("127.0.0.1", broker.port)
    viewer.subscribe("edgeface/+/events", qos=1)
    viewer.loop_start()
    build_and_publish(tmp_path, broker.port,
                      people_folder(tmp_path / "v1", scenario.enrolment, ["baejun", "chipu", "khanh"]), 1)  # fmt: skip
    doors, runners = [], []
    for name in ("door-a", "door-b"):
        config = parse_config({
            "device": {"id": name, "fleet": "lobby", "state_dir": str(tmp_path / name)},
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "sync": {"enabled": True, "public_key": str(tmp_path / "fleet.pub"), "expiry_policy": "deny"},
        })  # fmt: skip
        source = EmulatedSource(scenario.scene, fps=10.0, realtime=True, loop=True, name="entrance")
        doors.append(Daemon(config, source=source))
        runners.append(threading.Thread(target=doors[-1].run))
        runners[-1].start()
    try:
        for door in doors:
            wait_until(lambda d=door: d.ready.is_set() and d.live.current.version == 1, 30)
            signed = door.live.current.gallery.calibration  # the manifest's decision, stored on apply
            assert signed is not None and signed.method == "signed manifest"
            assert door.parts.rule.source == "gallery" and door.parts.rule.threshold == signed.threshold
        patience = 10 * scenario.scene.duration  # the doors' cameras loop over the scene
        for name in ("door-a", "door-b"):  # every enrolled visitor has passed each door on version 1
            wait_until(lambda n=name: {"baejun", "chipu", "khanh"} <= matched(events, n, 1, 0.0), patience)
        build_and_publish(tmp_path, broker.port,
                          people_folder(tmp_path / "v2", scenario.enrolment, ["chipu", "khanh", "sontung"]), 2)  # fmt: skip
        published = time.monotonic()
        for door in doors:
            wait_until(lambda d=door: d.live.current.version == 2, 60)
        for name in ("door-a", "door-b"):
            wait_until(
                lambda n=name: (
                    {"chipu", "khanh", "sontung"} <= matched(events, n, 2, published)
                    and unknowns(events, n, 2, published) >= 2
                ),
                patience,
            )
    finally:
        for door in doors:
            door.request_stop()
        for runner in runners:
            runner.join(30)
        viewer.loop_stop()
        viewer.disconnect()
    for event in events:
        validate("event", {k: v for k, v in event.items() if k != "_at"})
    for name in ("door-a", "door-b"):
        matched_before, matched_after = matched(events, name, 1, 0.0), matched(events, name, 2, published)
        assert "sontung" not in matched_before, f"{name} on v1: {matched_before}"
        assert matched_after == {"chipu", "khanh", "sontung"}, f"{name} on v2: {matched_after}"
