"""The daemon keeps running when its camera is unplugged, says so in metrics, and recognises again after."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from edgeface.camera import CameraSpec, open_source
from edgeface.camera.standins import EmulatedDevice
from edgeface.config import parse_config
from edgeface.daemon.service import Daemon
from edgeface.demo.scenario import build_scenario
from edgeface.vision.detect import FaceDetector
from tests.event_schema import validate


def test_unplugged_camera_recovers_and_shows_in_metrics(broker, tmp_path, faces5, models_dir) -> None:
    scenario = build_scenario(faces5, FaceDetector(models_dir), shown_per_person=1)
    device = EmulatedDevice(scenario.scene, fps=10.0, realtime=True)
    spec = CameraSpec(kind="opencv", name="door", device=0, fps=10.0, backoff_initial_s=0.2, backoff_max_s=0.5,
                      stall_timeout_s=0.5)  # fmt: skip
    source = open_source(spec, capture_factory=device.video_capture)
    config = parse_config(
        {
            "device": {"id": "flaky-door", "state_dir": str(tmp_path)},
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "metrics": {"interval_s": 1.0},
        }
    )
    metrics: list[dict] = []
    viewer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="metrics-viewer")
    viewer.on_message = lambda c, u, m: metrics.append(json.loads(m.payload))
    viewer.connect("127.0.0.1", broker.port)
    viewer.subscribe("edgeface/flaky-door/metrics")
    viewer.loop_start()
    daemon = Daemon(config, source=source)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        assert daemon.ready.wait(30)
        time.sleep(2.0)
        device.unplug()
        time.sleep(3.0)
        unplugged = dict(metrics[-1])
        frames_while_unplugged = daemon.frames_processed
        device.plug()
        time.sleep(4.0)
        assert runner.is_alive(), "the daemon must survive a camera that disappears"
    finally:
        daemon.request_stop()
        runner.join(30)
        viewer.loop_stop()
        viewer.disconnect()
    validate("metrics", unplugged)
    assert unplugged["camera"]["connected"] is False
    assert unplugged["camera"]["last_error"]
    assert metrics[-1]["camera"]["reconnects"] >= 1
    assert daemon.frames_processed > frames_while_unplugged + 10, "frames must flow again after re-plugging"
