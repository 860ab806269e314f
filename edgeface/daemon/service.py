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

from edgeface.camera import FrameSource, open_source
from edgeface.config import Config, load_config
from edgeface.daemon.incidents import Incidents
from edgeface.daemon.parts import build_parts, build_publisher
from edgeface.daemon.sdnotify import Notifier, watchdog_interval
from edgeface.daemon.startup import (
    SyncParts,
    decision_settings,
    recover_stored_gallery,
    start_sync,
)
from edgeface.errors import EdgefaceError, GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.identity.live import GoLive, LiveGallery
from edgeface.identity.recovery import Recovery
from edgeface.mqtt.payloads import StageLatency, StatusInfo, metrics_payload
from edgeface.pipeline.announce import Announcer
from edgeface.pipeline.events import recognition_event
from edgeface.pipeline.frames import CaptureThread, DropOldestQueue
from edgeface.pipeline.recognize import Decision, Recognizer
from edgeface.util.logsafe import printable
from edgeface.version import __version__

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
        self.incidents = Incidents()

    @property
    def live(self) -> GoLive:
        return self.parts.live

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> int:
        config = self.config
        with ExitStack() as stack:
            self.notifier = stack.enter_context(Notifier())
            self.notifier.status("loading models")
            recovery = recover_stored_gallery(config)  # a damaged current version falls back, never stops us
            self.report_recovery(recovery)
            parts = self.parts = build_parts(config, gallery=recovery.gallery)
            stack.callback(parts.close)
            self.model_name = parts.embedder.card.name
            log.info(
                "decision: threshold %.4f (%s: %s)",
                parts.rule.threshold,
                parts.rule.source,
                parts.rule.detail,
            )
            self.publisher = build_publisher(config, self.status_info())
            stack.callback(self.publisher.close)
            self.publisher.start()
            self.sync = start_sync(
                config,
                self.publisher,
                parts.live,
                parts.embedder.sha256,
                self.on_gallery_applied,
                dim=parts.embedder.dim,
                on_rejected=lambda reason: self.incident("bundle_rejected", reason),
            )
            if self.sync is not None:
                stack.callback(self.sync.close)
            self.recognizer = Recognizer(
                parts.encoder,
                parts.live,
                config.quality,
                decision_settings(config),
                matching_allowed=self.sync.matching_allowed if self.sync else (lambda: True),
            )
            self.announcer = Announcer(config.match.cooldown_s)
            source = self.source = self._injected_source or open_source(config.require_camera())
            stack.callback(source.close)
            self.frames = DropOldestQueue(config.detector.queue_frames)
            self.capture = CaptureThread(source, self.frames, self.stop_event)
            self.capture.start()
            stack.callback(self.capture.join, 5.0)
            stack.callback(self.stop_event.set)
            self.publisher.wait_connected(timeout=5.0)  # not fatal: the spool holds events meanwhile
            gallery = parts.gallery
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
            verdict = self.announcer.consider(decision, now)
            if not verdict.announce:
                log.info("track %d: %s, not announced", decision.track_id, printable(verdict.reason))
                continue
            latency_ms = (now - decision.frame_ts) * 1e3
            event = recognition_event(
                device=self.config.device.id,
                camera=decision.camera,
                track=decision.track_id,
                match=decision.match,
                frames=decision.frames,
                bbox=decision.bbox,
                gallery_version=decision.gallery_version,
                model_sha256=self.parts.embedder.sha256,
                latency_ms=latency_ms,
                corrects=verdict.corrects,
            )
            self.recognizer.latency.add("frame_to_event", latency_ms)
            self.publisher.publish_event(event)  # returns once the event is on disk
            self.announcer.announced(decision, event.event_id, now)
            self.events_published += 1
            log.info(
                "event %s spooled: track %d %s%s (score %.3f, margin %.3f, %d frames)",
                event.event_id,
                decision.track_id,
                printable(who),
                " (corrects an unknown)" if verdict.corrects else "",
                decision.match.score,
                decision.match.margin,
                decision.frames,
            )

    def on_gallery_applied(self, live: LiveGallery) -> None:
        """A synced gallery went live (with its rule, `GoLive.publish`): say so in the retained status."""
        self.publisher.set_status(self.status_info(live))

    def status_info(self, live: LiveGallery | None = None) -> StatusInfo:
        live = live or self.parts.live.current
        return StatusInfo(
            version=__version__,
            gallery_version=live.version,
            gallery_count=len(live.gallery),
            model_name=self.model_name,
            gallery_expired=bool(self.sync and self.sync.client.expired),
            model_sha256=live.gallery.model_sha256,
            decision=live.rule.as_dict(),
            incidents=self.incidents.latest(),
        )

    def incident(self, kind: str, detail: str) -> None:
        """Record what was survived and, if it is new, say so in the retained status."""
        if self.incidents.add(kind, detail) and hasattr(self, "publisher"):
            self.publisher.set_status(self.status_info())

    def report_recovery(self, recovery: Recovery) -> None:
        for aside in recovery.set_aside:
            moved = f"; moved to {aside.moved_to}" if aside.moved_to else ""
            self.incident("gallery_set_aside", f"version {aside.version}: {aside.reason}{moved}")
        if recovery.fell_back and recovery.gallery is not None:
            log.error("gallery: fell back to stored version %d", recovery.gallery.version)
        elif recovery.fell_back:
            self.incident("gallery_unusable", "no usable gallery version on disk")

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
                "reverified_resets": self.recognizer.reverified_resets,
                "decision": self.parts.rule.as_dict(),
                "events": self.events_published,
                "mqtt": publisher.as_dict(),
                "incidents": self.incidents.counts(),
            },
        )

    def camera_status(self) -> dict:
        current = self.source.status()
        if current is None:
            return {"connected": not self.capture.ended.is_set(), "error": self.capture.error}
        return {"connected": current.connected, "reconnects": current.reconnects, "failures": current.failures,
                "last_error": current.last_error}  # fmt: skip

    def reload(self) -> None:
        """SIGHUP: re-read the config and the on-disk gallery (falling back past damaged versions); if the
        config is bad or no stored version is usable, refuse: keep the running config and gallery."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            recovery = recover_stored_gallery(config, self.parts.embedder)
            self.report_recovery(recovery)
            if recovery.gallery is None and recovery.fell_back:
                raise GalleryError(f"{config.gallery_dir}: no usable gallery version on disk")
            gallery: Gallery = recovery.gallery or self.parts.gallery
            live = self.parts.use_gallery(gallery, config)
        except Exception as exc:  # whatever is wrong on disk, recognition goes on with what runs
            reason = str(exc) if isinstance(exc, EdgefaceError) else f"{type(exc).__name__}: {exc}"
            log.error("reload refused, keeping the running config and gallery: %s", printable(reason, 600))
            self.incident("reload_refused", reason)
            self.notifier.ready("running (reload refused)")
            return
        if self.sync is not None and recovery.fell_back:
            self.sync.client.set_running(gallery)
        self.config = config
        self.recognizer.reconfigure(config.quality, decision_settings(config))
        self.publisher.set_status(self.status_info(live))
        log.info(
            "config reloaded from %s: threshold %.4f (%s)",
            self.config_path,
            live.rule.threshold,
            live.rule.source,
        )
        self.notifier.ready("running (reloaded)")
