"""Freshness in the daemon: a door under `expiry_policy = "deny"` whose fleet timestamp expires announces
every visitor as `unknown` and says why in its retained status (incident `gallery_stale`, `gallery.freshness`);
a new timestamp brings matching back. Real daemon, emulated camera on the shared photos, real mosquitto."""

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
from tests.factories import people_folder, wait_for


def _gallery_cli(broker, tmp: Path, *args: str) -> None:
    assert main(["gallery", *args, "--broker", f"127.0.0.1:{broker.port}", "--fleet", "lobby"]) == 0


def test_a_stale_timestamp_under_deny_makes_visitors_unknown_and_is_reported(
    broker, tmp_path: Path, faces5, models_dir
) -> None:
    scenario = build_scenario(faces5, FaceDetector(models_dir), strangers=1, shown_per_person=1)
    key, pub, bundle = tmp_path / "fleet.pem", tmp_path / "fleet.pub", tmp_path / "v1.bundle"
    assert main(["gallery", "keygen", "--private", str(key), "--public", str(pub)]) == 0
    folders = people_folder(tmp_path / "v1", scenario.enrolment, sorted(scenario.enrolment))
    assert main(["gallery", "build", "--folders", str(folders), "--fleet", "lobby", "--version", "1",
                 "--largest-face", "--key", str(key), "--out", str(bundle)]) == 0  # fmt: skip
    _gallery_cli(broker, tmp_path, "publish", str(bundle))
    events: list[dict] = []
    statuses: list[dict] = []
    viewer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="freshness-viewer")
    viewer.message_callback_add("edgeface/door/events", lambda c, u, m: events.append(
        json.loads(m.payload) | {"_at": time.monotonic()}))  # fmt: skip
    viewer.message_callback_add(
        "edgeface/door/status", lambda c, u, m: statuses.append(json.loads(m.payload))
    )
    viewer.connect("127.0.0.1", broker.port)
    viewer.subscribe([("edgeface/door/events", 1), ("edgeface/door/status", 1)])
    viewer.loop_start()
    config = parse_config({
        "device": {"id": "door", "fleet": "lobby", "state_dir": str(tmp_path / "door")},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "sync": {"enabled": True, "public_key": str(pub), "expiry_policy": "deny", "timestamp_required": True},
    })  # fmt: skip
    source = EmulatedSource(scenario.scene, fps=10.0, realtime=True, loop=True, name="entrance")
    door = Daemon(config, source=source)
    runner = threading.Thread(target=door.run)
    runner.start()
    cycle = scenario.scene.duration
    try:
        wait_for(lambda: door.ready.is_set() and door.parts.live.current.version == 1, 30, "v1 running")
        _gallery_cli(
            broker, tmp_path, "timestamp", "--key", str(key), "--minutes", "0.5", "--state-wait", "0.2"
        )
        wait_for(lambda: not door.sync.client.freshness.stale, 10, "fresh")
        fresh_from = time.monotonic()
        wait_for(lambda: door.sync.client.freshness.stale, 40, "stale after 30 s")
        stale_from = time.monotonic()
        time.sleep(cycle + 1.0)  # every visitor passes once while stale
        _gallery_cli(
            broker, tmp_path, "timestamp", "--key", str(key), "--minutes", "5", "--state-wait", "0.2"
        )
        wait_for(lambda: not door.sync.client.freshness.stale, 10, "fresh again")
        fresh_again = time.monotonic()
        time.sleep(cycle + 1.0)
    finally:
        door.request_stop()
        runner.join(30)
        viewer.loop_stop()
        viewer.disconnect()
    while_fresh = [e for e in events if fresh_from < e["_at"] < stale_from]
    while_stale = [e for e in events if stale_from + 0.5 < e["_at"] < fresh_again]
    after = [e for e in events if e["_at"] > fresh_again + 0.5]
    assert any(e["decision"] == "match" for e in while_fresh + after), "matching works while fresh"
    assert while_stale and all(e["decision"] == "unknown" for e in while_stale), while_stale
    stale_status = [s for s in statuses if s["gallery"].get("freshness", {}).get("stale")]
    assert stale_status, "the retained status said the gallery was stale"
    incidents = [i for s in stale_status for i in s.get("incidents", [])]
    assert any(i["kind"] == "gallery_stale" and "policy deny" in i["detail"] for i in incidents), incidents
