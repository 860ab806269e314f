"""The door-unit daemon: camera -> recognizer -> MQTT, under systemd (docs/design.md §2, §5-8).

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
from edgeface.daemon.parts import build_homeassistant, build_parts, build_publisher
from edgeface.daemon.reloading import live_part, restart_keys
from edgeface.daemon.sdnotify import Notifier, watchdog_interval
from edgeface.daemon.startup import (
    SyncParts,
    recover_stored_gallery,
    start_sync,
)
from edgeface.errors import EdgefaceError, GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.identity.live import GoLive, LiveGallery
from edgeface.identity.recovery import Recovery
from edgeface.mqtt.payloads import CameraHealth, Metrics, StageLatency, StatusInfo
from edgeface.pipeline.announce import Announcer
from edgeface.pipeline.events import Event
from edgeface.pipeline.frames import CaptureThread, DropOldestQueue
from edgeface.pipeline.recognize import Recognition, Recognizer
from edgeface.pipeline.visitors import VisitorStore
from edgeface.sync.timestamp import Freshness
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
        self.failure: str | None = None  # why the daemon stopped vouching for itself (publisher dead)

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
            self.homeassistant = build_homeassistant(config, self.publisher, self.model_name)
            self.homeassistant.attach(parts.gallery)  # before start: the first connect publishes discovery
            self.visitors = (
                VisitorStore(config.device.state_dir, config.visitors) if config.visitors.keep else None
            )
            self.publisher.start()
            self.sync = start_sync(
                config,
                self.publisher,
                parts.live,
                parts.embedder.sha256,
                self.on_gallery_applied,
                dim=parts.embedder.dim,
                on_rejected=lambda reason: self.incident("bundle_rejected", reason),
                on_freshness=self.on_freshness,
            )
            if self.sync is not None:
                stack.callback(self.sync.close)
            self.recognizer = Recognizer(
                parts.encoder.detector,
                parts.encoder,
                parts.live,
                config.quality,
                config.match,
                every_n_frames=config.detector.every_n_frames,
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
        return 1 if self.capture.error or self.failure else 0

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
            self.check_expiry()
            self.failure = self.publisher.failure
            if self.failure is not None:  # events could only pile up in the spool: let systemd restart us
                log.error("%s; exiting so systemd restarts the service", self.failure)
                self.notifier.status(f"failed: {self.failure}")
                break
            if watchdog and now - last_frame < watchdog:
                self.notifier.watchdog()  # only while frames flow: a stuck camera lets systemd restart us
            self.homeassistant.tick()
            if now >= next_metrics:
                next_metrics = now + self.config.metrics.interval_s
                self.publisher.publish_metrics(self.metrics())

    def check_expiry(self) -> None:
        """Say so (log, incident, retained status and gallery/state) when the running gallery expires."""
        expired = self.sync.client.check_expiry() if self.sync is not None else None
        if expired is None or self.sync is None:
            return
        if expired:
            version, when = self.sync.client.running_version, self.sync.client.expires
            if self.sync.client.policy.expiry_policy == "deny":
                detail = (f'gallery v{version} expired at {when}; sync.expiry_policy = "deny": every visitor is now '
                          "reported as unknown until a newer signed gallery is applied")  # fmt: skip
                log.error("%s", detail)
            else:
                detail = f'gallery v{version} expired at {when}; sync.expiry_policy = "warn": still matching with it'
                log.warning("%s", detail)
            self.incident("gallery_expired", detail)
        self.publisher.set_status(self.status_info())

    def handle(self, recognitions: list[Recognition]) -> None:
        for recognition in recognitions:
            now = time.monotonic()
            who = recognition.match.identity.id if recognition.match.identity else "unknown"
            if recognition.match.identity is not None:
                self.homeassistant.recognised(recognition.match.identity.id)
            verdict = self.announcer.consider(recognition, now)
            if not verdict.announce:
                log.info("track %d: %s, not announced", recognition.track_id, printable(verdict.reason))
                continue
            latency_ms = (now - recognition.frame_ts) * 1e3
            event = Event.from_recognition(
                recognition,
                device=self.config.device.id,
                model_sha256=self.parts.embedder.sha256,
                latency_ms=latency_ms,
                corrects=verdict.corrects,
            )
            self.recognizer.latency.add("frame_to_event", latency_ms)
            self.publisher.publish_event(event)  # returns once the event is on disk
            self.announcer.announced(recognition, event.event_id, now)
            self.homeassistant.event_published(event, recognition.crops[-1] if recognition.crops else None)
            if self.visitors is not None:
                self.visitors.keep(event.event_id, event.ts, event.decision,
                                   who if event.identity else None, event.score, list(recognition.crops))  # fmt: skip
            self.events_published += 1
            log.info(
                "event %s spooled: track %d %s%s (score %.3f, margin %.3f, %d frames)",
                event.event_id,
                recognition.track_id,
                printable(who),
                " (corrects an unknown)" if verdict.corrects else "",
                recognition.match.score,
                recognition.match.margin,
                recognition.frames,
            )

    def on_gallery_applied(self, live: LiveGallery) -> None:
        """A synced gallery went live (with its rule, `GoLive.publish`): say so in the retained status and
        to Home Assistant."""
        self.publisher.set_status(self.status_info(live))
        self.homeassistant.gallery_changed(live.gallery)
        log.info("gallery v%d active: %d identities", live.gallery.version, len(live.gallery))

    def on_freshness(self, freshness: Freshness) -> None:
        """The fleet's signed timestamp arrived or expired: say so in the status (an incident when stale)."""
        if freshness.stale:
            deny = self.config.sync.expiry_policy == "deny"
            effect = (
                "visitors are announced unknown (policy deny)" if deny else "still matching (policy warn)"
            )
            self.incident("gallery_stale", f"no current signed timestamp (age {freshness.age_s} s): {effect}")
        elif hasattr(self, "publisher"):
            self.publisher.set_status(self.status_info())

    def status_info(self, live: LiveGallery | None = None) -> StatusInfo:
        live = live or self.parts.live.current
        return StatusInfo(
            version=__version__,
            gallery_version=live.version,
            gallery_count=len(live.gallery),
            model_name=self.model_name,
            gallery_expired=bool(self.sync and self.sync.client.expired),
            freshness=self.sync.client.freshness.as_dict() if self.sync else None,
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

    def metrics(self) -> Metrics:
        uptime = time.monotonic() - self.started
        stages = {k: StageLatency(v["p50"], v["p95"]) for k, v in self.recognizer.latency.summary().items()}
        publisher = self.publisher.stats()
        return Metrics(
            device=self.config.device.id,
            fps=self.frames_processed / max(uptime, 1e-6),
            stages=stages,
            queues={"frames": len(self.frames), "spool": publisher.pending},
            dropped_frames=self.frames.dropped,
            uptime_s=uptime,
            camera=self.camera_health(),
            camera_frames=self.capture.captured,
            rejected_faces=self.recognizer.rejected_faces,
            reverified_resets=self.recognizer.reverified_resets,
            decision=self.parts.rule.as_dict(),
            events=self.events_published,
            mqtt=publisher.as_dict(),
            incidents=self.incidents.counts(),
        )

    def camera_health(self) -> CameraHealth:
        current = self.source.status()
        if current is None:
            return CameraHealth(not self.capture.ended.is_set(), self.capture.error)
        return CameraHealth(current.connected, current.last_error, current.reconnects, current.failures)

    def reload(self) -> None:
        """SIGHUP: re-read the config and the on-disk gallery (falling back past damaged versions); if the
        config is bad or no stored version is usable, refuse: keep the running config and gallery. Keys that
        only a restart applies keep their running values and are named. Never raises."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        swapped = False
        try:
            config, recovery, restart = self._read_reload(self.config_path)
            gallery: Gallery = recovery.gallery or self.parts.gallery
            live = self.parts.use_gallery(gallery, config)
            swapped = True
            self._finish_reload(config, recovery, live, restart)
        except Exception as exc:  # whatever is wrong on disk, recognition goes on with what runs
            reason = str(exc) if isinstance(exc, EdgefaceError) else f"{type(exc).__name__}: {exc}"
            if swapped:
                log.error("reload: the stored gallery is live, but finishing the reload failed: %s",
                          printable(reason, 600))  # fmt: skip
            else:
                log.error(
                    "reload refused, keeping the running config and gallery: %s", printable(reason, 600)
                )
            self.incident("reload_refused", reason)
            self.notifier.ready("running (reload refused)")

    def _read_reload(self, path: Path) -> tuple[Config, Recovery, list[str]]:
        """The new config (restart-only sections kept as they run), the stored gallery, and the keys
        that need a restart; raises without changing anything if the reload must be refused."""
        loaded = load_config(path)
        restart = restart_keys(self.config, loaded)
        config = live_part(self.config, loaded)
        recovery = recover_stored_gallery(config, self.parts.embedder)
        self.report_recovery(recovery)
        if recovery.gallery is None and recovery.fell_back:
            raise GalleryError(f"{config.gallery_dir}: no usable gallery version on disk")
        return config, recovery, restart

    def _finish_reload(
        self, config: Config, recovery: Recovery, live: LiveGallery, restart: list[str]
    ) -> None:
        if self.sync is not None and recovery.fell_back:
            self.sync.client.set_running(live.gallery)
        self.config = config
        self.announcer.cooldown_s = config.match.cooldown_s
        self.recognizer.reconfigure(config.quality, config.match, config.detector.every_n_frames)
        self.publisher.set_status(self.status_info(live))
        self.homeassistant.gallery_changed(live.gallery)
        if restart:
            shown = ", ".join(restart)
            log.warning(
                "reload: %s changed; only a restart applies %s (systemctl restart edgeface): still running "
                "with the old value%s",
                printable(shown, 400),
                "it" if len(restart) == 1 else "them",
                "" if len(restart) == 1 else "s",
            )
            self.incident("restart_needed", f"changed by reload, applied only after a restart: {shown}")
        log.info(
            "config reloaded from %s: [gallery], [match], [quality], [metrics] applied; threshold %.4f (%s)",
            self.config_path,
            live.rule.threshold,
            live.rule.source,
        )
        self.notifier.ready("running (reloaded)" if not restart else "running (reloaded; restart needed)")
