"""End to end: the real daemon (separate process) on emulated frames of real faces, through a real mosquitto.

Enrolled visitors must each yield exactly one `match` with the right id, strangers `unknown`; a 30 s broker
outage and a SIGKILL of the daemon must lose no event (docs/design.md §6 at-least-once, de-duplicated by
event_id).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgeface.demo.scenario import Scenario, build_scenario
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.rule import CardFallback
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.detect import FaceDetector
from edgeface.vision.embed import Embedder
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.landmarks import LandmarkRefiner
from edgeface.vision.photos import read_image
from tests.event_schema import validate

CHILD = Path(__file__).with_name("daemon_child.py")
SHOWN = 2  # photos per person shown to the camera: two visits each
FPS = 10.0
EVENT_LINE = re.compile(r"event ([0-9a-f-]{36}) spooled")


@pytest.fixture(scope="module")
def scenario_state(tmp_path_factory, faces5, models_dir) -> tuple[Scenario, Path]:
    """The scenario and a state folder whose gallery holds the enrolled identities (not the shown photos)."""
    encoder = FaceEncoder(FaceDetector(models_dir), Embedder(models_dir / DEFAULT_EMBEDDER_CARD),
                          LandmarkRefiner(models_dir))  # fmt: skip
    scenario = build_scenario(faces5, encoder.detector, shown_per_person=SHOWN)
    gallery = Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
    for identity, photos in scenario.enrolment.items():
        embeddings = np.stack([encoder.encode_largest(read_image(p), str(p)).embedding for p in photos])
        gallery = gallery.enroll(identity, identity, embeddings)
    gallery = gallery.with_version(1).calibrated_with_card(
        0.01, CardFallback.of_card(encoder.embedder.card)
    )  # as `enroll`
    assert gallery.calibration is not None
    template = tmp_path_factory.mktemp("state-template")
    GalleryStore(template / "gallery").save(gallery)
    return scenario, template


def fresh_state(template: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    subprocess.run(["cp", "-a", str(template), str(state)], check=True)
    return state


class Viewer:
    """A persistent-session QoS 1 subscriber that survives broker restarts, recording every event."""

    def __init__(self, port: int) -> None:
        self.events: list[dict] = []
        self.statuses: list[dict] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-viewer", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("edgeface/+/events", 1), ("edgeface/+/status", 1)]
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic.endswith("/status"):
                self.statuses.append(json.loads(message.payload))
                return
            self.raw.append(message.payload)
            self.events.append(json.loads(message.payload))

    def ids(self) -> list[str]:
        with self._lock:
            return [e["event_id"] for e in self.events]

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(self.ids()):
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Child:
    def __init__(self, state: Path, port: int, faces: Path, log: Path) -> None:
        self.log = log
        self._handle = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(state), str(port), str(faces), str(SHOWN), str(FPS)],
            stdout=self._handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
        )  # fmt: skip

    def spooled_ids(self) -> list[str]:
        return EVENT_LINE.findall(self.log.read_text())

    def wait_events(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.spooled_ids()) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"daemon logged {len(self.spooled_ids())} events:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._handle.close()
        return code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._handle.close()


def assert_visits_decided(scenario: Scenario, events: list[dict]) -> None:
    for event in events:
        validate("event", event)
    matched = Counter(e["identity"]["id"] for e in events if e["decision"] == "match")
    expected = Counter(v for v in scenario.expected.values() if v != "unknown")
    assert matched == expected, f"matches {dict(matched)} != one per enrolled visit {dict(expected)}"
    unknowns = sum(e["decision"] == "unknown" for e in events)
    assert unknowns >= SHOWN * len(scenario.strangers)


def test_enrolled_match_once_and_strangers_are_unknown(scenario_state, broker, tmp_path, faces5) -> None:
    scenario, template = scenario_state
    viewer = Viewer(broker.port)
    child = Child(fresh_state(template, tmp_path), broker.port, faces5, tmp_path / "daemon.log")
    try:
        assert child.wait_exit(timeout=150) == 0, child.log.read_text()[-3000:]
        assert viewer.wait_for(set(child.spooled_ids()), timeout=10)
    finally:
        viewer.close()
    assert len(viewer.ids()) == len(set(viewer.ids()))
    assert_visits_decided(scenario, viewer.events)
    calibration = GalleryStore(template / "gallery").load().calibration
    assert calibration is not None and viewer.statuses
    for status in viewer.statuses:  # the daemon decides with the gallery's own calibration, and says so
        validate("status", status)
        assert status["decision"]["source"] == "gallery"
        assert status["decision"]["threshold"] == calibration.threshold
    assert {e["threshold"] for e in viewer.events} == {calibration.threshold}


def test_broker_outage_of_30s_loses_nothing(scenario_state, broker, tmp_path, faces5) -> None:
    scenario, template = scenario_state
    viewer = Viewer(broker.port)
    child = Child(fresh_state(template, tmp_path), broker.port, faces5, tmp_path / "daemon.log")
    try:
        child.wait_events(1, timeout=60)
        broker.stop()
        time.sleep(30)
        during_outage = len(child.spooled_ids())
        broker.start()
        assert child.wait_exit(timeout=150) == 0, child.log.read_text()[-3000:]
        spooled = set(child.spooled_ids())
        assert viewer.wait_for(spooled, timeout=30), f"lost: {spooled - set(viewer.ids())}"
    finally:
        viewer.close()
    assert during_outage > 1, "some events should have been decided while the broker was down"
    unique = {e["event_id"]: e for e in viewer.events}
    assert set(unique) == spooled
    assert_visits_decided(scenario, list(unique.values()))


def test_sigkill_and_restart_loses_nothing(scenario_state, broker, tmp_path, faces5) -> None:
    _, template = scenario_state
    state = fresh_state(template, tmp_path)
    viewer = Viewer(broker.port)
    try:
        first = Child(state, broker.port, faces5, tmp_path / "first.log")
        first.wait_events(3, timeout=60)
        first.kill()
        second = Child(state, broker.port, faces5, tmp_path / "second.log")
        assert second.wait_exit(timeout=150) == 0, second.log.read_text()[-3000:]
        spooled = set(first.spooled_ids()) | set(second.spooled_ids())
        assert viewer.wait_for(spooled, timeout=30), f"lost: {spooled - set(viewer.ids())}"
    finally:
        viewer.close()
    by_id: dict[str, bytes] = {}
    for raw, event in zip(viewer.raw, viewer.events, strict=True):
        assert by_id.setdefault(event["event_id"], raw) == raw, "a re-delivery must be the same event"
    assert len(first.spooled_ids()) >= 3
