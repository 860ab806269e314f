"""`edgeface demo`: the daemon on emulated frames of real faces, through a real local MQTT broker.

Some identities are enrolled from part of their photos, the rest are strangers; the emulated camera walks
everyone past the door using photos that were not enrolled. Every event the broker delivers is printed as
one JSON line; a summary line ends the run.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeface.camera.emulated import EmulatedSource
from edgeface.config import Config, parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.daemon.service import Daemon
from edgeface.demo.localbroker import local_broker
from edgeface.demo.scenario import Scenario, build_scenario
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.rule import CardFallback
from edgeface.mqtt.topics import EVENTS, every_device
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.photos import read_image

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage

log = logging.getLogger(__name__)


def enroll(encoder: FaceEncoder, scenario: Scenario, store: GalleryStore) -> Gallery:
    """Enrol as `edgeface enroll` does: the photo face path, then the gallery's own calibration."""
    gallery = Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
    for identity, photos in scenario.enrolment.items():
        embeddings = [f.embedding for p in photos for f in encoder.encode(read_image(p))[:1]]
        gallery = gallery.enroll(identity, identity.title(), np.stack(embeddings))
    gallery = gallery.with_version(1).calibrated_with_card(
        DEFAULT_TARGET_FPIR, CardFallback.of_card(encoder.embedder.card)
    )
    store.save(gallery)
    return gallery


class EventCollector:
    """Subscribes to every device's events and prints each one as a JSON line."""

    def __init__(self, port: int, prefix: str = "edgeface") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.events: list[dict[str, Any]] = []  # event payloads (docs/design.md §6), read back by key
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgeface-demo-viewer")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(every_device(prefix, EVENTS), qos=1)
        self._client.loop_start()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker acknowledged the subscription (events published before it would be lost)."""
        return self._subscribed.wait(timeout)

    def wait_for(self, count: int, timeout: float) -> bool:
        """True once `count` events arrived; False after `timeout` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.events) >= count, timeout)

    def _on_message(self, client: object, userdata: object, message: MQTTMessage) -> None:
        try:
            event = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(event, dict):  # valid JSON but no event: `summarise` reads events by key
            return
        print(json.dumps(event), flush=True)
        with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def demo_config(state_dir: Path, port: int) -> Config:
    return parse_config(
        {
            "device": {"id": "demo-door", "state_dir": str(state_dir)},
            "camera": {"kind": "emulated", "faces": str(state_dir)},
            "mqtt": {"host": "127.0.0.1", "port": port},
            "metrics": {"interval_s": 5.0},
        }
    )


def summarise(
    daemon: Daemon, collector: EventCollector, scenario: Scenario, elapsed: float
) -> dict[str, object]:
    events = list(collector.events)
    matches = [e for e in events if e["decision"] == "match"]
    expected_ids = sorted(v for v in scenario.expected.values() if v != "unknown")
    latency = daemon.recognizer.latency.summary().get("frame_to_event", {})
    rule = daemon.parts.rule
    return {
        "summary": {
            "events": len(events),
            "matches": len(matches),
            "unknowns": len(events) - len(matches),
            "matched_ids": sorted(e["identity"]["id"] for e in matches),
            "expected_matches": expected_ids,
            "expected_strangers": list(scenario.strangers),
            "threshold": rule.threshold,
            "threshold_source": rule.source,
            "fps": round(daemon.frames_processed / elapsed, 1),
            "dropped_frames": daemon.frames.dropped,
            "p95_latency_ms": latency.get("p95"),
            "p50_latency_ms": latency.get("p50"),
        }
    }


def _run_capturing(daemon: Daemon, failure: list[BaseException]) -> None:
    try:
        daemon.run()
    except BaseException as exc:  # handed to the main thread, which reports it
        failure.append(exc)


def run_demo(faces: Path, seconds: float | None, strangers: int = 1) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="edgeface-demo-") as tmp, local_broker(Path(tmp)) as port:
        state = Path(tmp) / "state"
        encoder = build_encoder(demo_config(state, port), photos=True)
        scenario = build_scenario(faces, encoder.detector, strangers=strangers)
        gallery = enroll(encoder, scenario, GalleryStore(state / "gallery"))
        encoder.close()
        print(
            f"enrolled {len(gallery)} identities, strangers: {', '.join(scenario.strangers)}", file=sys.stderr
        )
        source = EmulatedSource(replace(scenario.scene), fps=15.0, realtime=True, name="door")
        collector = EventCollector(port)
        if not collector.wait_subscribed(30):
            collector.close()
            raise RuntimeError(
                "demo: the event viewer's subscription was not acknowledged by the local broker"
            )
        daemon = Daemon(demo_config(state, port), source=source)
        failure: list[BaseException] = []
        runner = threading.Thread(target=_run_capturing, args=(daemon, failure), name="daemon")
        started = time.monotonic()
        runner.start()
        runner.join(timeout=seconds)
        daemon.request_stop()
        runner.join()
        if failure:
            collector.close()
            raise failure[0]
        elapsed = time.monotonic() - started
        collector.wait_for(daemon.events_published, 30)  # the last events may still be on their way
        collector.close()
        return summarise(daemon, collector, scenario, elapsed)
