"""Fleet sync end to end: two daemons on emulated frames follow gallery N -> N+1 published by the server CLI.

Version 1 enrolls baejun, chipu and khanh; version 2 removes baejun and adds sontung. Both doors must run
version 2 within 5 s of publishing, after which baejun is `unknown` and sontung is matched.
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
        cycle = scenario.scene.duration
        time.sleep(cycle)  # every visitor passes each door once on version 1
        build_and_publish(tmp_path, broker.port,
                          people_folder(tmp_path / "v2", scenario.enrolment, ["chipu", "khanh", "sontung"]), 2)  # fmt: skip
        published = time.monotonic()
        for door in doors:
            wait_until(lambda d=door: d.live.current.version == 2, 5.0 - (time.monotonic() - published))
        time.sleep(cycle + 1.0)
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
        mine = [e for e in events if e["device"] == name]
        before = [e for e in mine if e["gallery_version"] == 1]
        after = [e for e in mine if e["gallery_version"] == 2 and e["_at"] > published]
        matched_before = {e["identity"]["id"] for e in before if e["decision"] == "match"}
        matched_after = {e["identity"]["id"] for e in after if e["decision"] == "match"}
        assert {"baejun", "chipu", "khanh"} <= matched_before, f"{name} on v1: {matched_before}"
        assert "sontung" not in matched_before
        assert matched_after == {"chipu", "khanh", "sontung"}, f"{name} on v2: {matched_after}"
        assert sum(e["decision"] == "unknown" for e in after) >= 2, (
            "baejun and the stranger are unknown on v2"
        )
