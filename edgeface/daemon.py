"""The door-unit daemon: camera -> recognizer -> MQTT, under systemd (DESIGN §2, §5-8).

`Daemon.run()` wires the stages top to bottom and owns every resource in one ExitStack, so SIGTERM
closes the camera, flushes the event spool and publishes `offline` cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import edgeface
from edgeface.camera import FrameSource, open_source
from edgeface.config import Config, load_config
from edgeface.daemon_setup import (
    SyncParts,
    camera_spec,
    config_index_settings,
    decision_settings,
    load_gallery,
    load_models,
    match_settings,
    mqtt_settings,
    quality_settings,
    start_sync,
)
from edgeface.errors import EdgefaceError
from edgeface.frames import CaptureThread, DropOldestQueue
from edgeface.index import GalleryIndex, IndexHolder
from edgeface.match import Matcher
from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.payloads import StageLatency, StatusInfo, metrics_payload, recognition_event
from edgeface.recognize import Decision, Recognizer
from edgeface.sdnotify import Notifier, watchdog_interval

log = logging.getLogger(__name__)


class Daemon:
    def __init__(
        self, config: Config, config_path: Path | None = None, source: FrameSource | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._injected_source = source
        self.stop_event = threading.Event()
        self._reload = threading.Event()
        self.events_published = 0
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.sync: SyncParts | None = None

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> int:
        config = self.config
        with ExitStack() as stack:
            self.notifier = stack.enter_context(Notifier())
            self.notifier.status("loading models")
            detector, embedder, refiner = load_models(config)
            self.model_name = embedder.card.name
            stack.callback(detector.close)
            stack.callback(embedder.close)
            gallery = load_gallery(config, embedder.sha256)
            self.index = IndexHolder(GalleryIndex(gallery, config_index_settings(config)))
            self.publisher = MqttPublisher(mqtt_settings(config), self.status_info())
            stack.callback(self.publisher.close)
            self.publisher.start()
            self.sync = start_sync(
                config, self.publisher, self.index, embedder.sha256, self.on_gallery_applied
            )
            if self.sync is not None:
                stack.callback(self.sync.close)
            self.recognizer = Recognizer(
                detector,
                embedder,
                self.index,
                Matcher(match_settings(config, embedder.card.raw)),
                quality_settings(config),
                decision_settings(config),
                matching_allowed=self.sync.matching_allowed if self.sync else (lambda: True),
                refiner=refiner,
            )
            source = self.source = self._injected_source or open_source(camera_spec(config))
            stack.callback(source.close)
            self.frames = DropOldestQueue(config.detector.queue_frames)
            self.capture = CaptureThread(source, self.frames, self.stop_event)
            self.capture.start()
            stack.callback(self.capture.join, 5.0)
            stack.callback(self.stop_event.set)
            self.publisher.wait_connected(timeout=5.0)  # not fatal: the spool holds events meanwhile
            self.notifier.ready(f"running, gallery v{gallery.version} ({len(gallery)} identities)")
            self.ready.set()
            self.loop()
            self.notifier.stopping()
        return 1 if self.capture.error else 0

    def loop(self) -> None:
        watchdog = watchdog_interval()
        next_metrics = time.monotonic() + self.config.metrics.interval_s
        self.frames_processed = 0
        last_frame = time.monotonic()
        while not self.stop_event.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            frame = self.frames.get(timeout=0.5)
            now = time.monotonic()
            if frame is None:
                if self.capture.ended.is_set() and not len(self.frames):
                    break
            else:
                last_frame = now
                self.frames_processed += 1
                self.handle(self.recognizer.process(frame))
            if watchdog and now - last_frame < watchdog:
                self.notifier.watchdog()  # only while frames flow: a stuck camera lets systemd restart us
            if now >= next_metrics:
                next_metrics = now + self.config.metrics.interval_s
                self.publisher.publish_metrics(self.metrics())

    def handle(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            now = time.monotonic()
            who = decision.match.identity.id if decision.match.identity else "unknown"
            if not self.recognizer.should_announce(decision, now):
                log.info("track %d: %s again within the cooldown, not announced", decision.track_id, who)
                continue
            event = recognition_event(
                device=self.config.device.id,
                camera=decision.camera,
                track=decision.track_id,
                match=decision.match,
                frames=decision.frames,
                bbox=decision.bbox,
                gallery_version=decision.gallery_version,
                model_sha256=self.recognizer.embedder.sha256,
                latency_ms=(now - decision.frame_ts) * 1e3,
            )
            self.recognizer.latency.add("frame_to_event", (now - decision.frame_ts) * 1e3)
            self.publisher.publish_event(event)  # returns once the event is on disk
            self.events_published += 1
            log.info(
                "event %s spooled: track %d %s (score %.3f, margin %.3f, %d frames)",
                event["event_id"],
                decision.track_id,
                who,
                decision.match.score,
                decision.match.margin,
                decision.frames,
            )

    def on_gallery_applied(self, index: GalleryIndex) -> None:
        self.publisher.set_status(self.status_info(index))
        log.info("gallery v%d active: %d identities", index.gallery.version, len(index.gallery))

    def status_info(self, index: GalleryIndex | None = None) -> StatusInfo:
        index = index or self.index.current
        return StatusInfo(
            version=edgeface.__version__,
            gallery_version=index.gallery.version,
            gallery_count=len(index.gallery),
            model_name=self.model_name,
            gallery_expired=bool(self.sync and self.sync.client.expired),
            model_sha256=index.gallery.model_sha256,
        )

    def metrics(self) -> dict:
        uptime = time.monotonic() - self.started
        stages = {k: StageLatency(v["p50"], v["p95"]) for k, v in self.recognizer.latency.summary().items()}
        publisher = self.publisher.stats()
        return metrics_payload(
            device=self.config.device.id,
            fps=self.frames_processed / max(uptime, 1e-6),
            stages=stages,
            queues={"frames": len(self.frames), "spool": publisher.pending},
            dropped_frames=self.frames.dropped,
            uptime_s=uptime,
            extra={
                "camera": self.camera_status(),
                "camera_frames": self.capture.captured,
                "rejected_faces": self.recognizer.rejected_faces,
                "events": self.events_published,
                "mqtt": publisher.as_dict(),
            },
        )

    def camera_status(self) -> dict:
        status = getattr(self.source, "status", None)
        if status is None:
            return {"connected": not self.capture.ended.is_set(), "error": self.capture.error}
        current = status()
        return {"connected": current.connected, "reconnects": current.reconnects, "failures": current.failures,
                "last_error": current.last_error}  # fmt: skip

    def reload(self) -> None:
        """SIGHUP: re-read the config; decision and quality settings and the on-disk gallery apply now."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
        except EdgefaceError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.notifier.ready("running (reload refused)")
            return
        self.config = config
        card = self.recognizer.embedder.card.raw
        self.recognizer.matcher = Matcher(match_settings(config, card))
        self.recognizer.quality = quality_settings(config)
        self.recognizer.decisions = decision_settings(config)
        gallery = load_gallery(config, self.recognizer.embedder.sha256)
        self.index.swap(GalleryIndex(gallery, config_index_settings(config)))
        log.info("config reloaded from %s", self.config_path)
        self.notifier.ready("running (reloaded)")
