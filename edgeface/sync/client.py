"""Device side of gallery sync, transport-agnostic: announcement -> chunks -> checks -> apply -> state.

Messages arrive on the transport's thread; they only parse the announcement, check its signature and buffer
chunks. Verifying the payload, writing the gallery and calling `on_gallery` (index build + swap) run on this
client's own worker thread, so neither the network loop nor recognition waits for them.

A fetch that times out is retried while connected: the chunk topics are subscribed again (the broker
re-sends their retained messages) after `fetch_timeout_s`, then twice that, and so on up to
`fetch_backoff_max_s`, `fetch_retries` times; each timeout reports `chunk_missing` (with "retrying") in the
retained state. A bundle whose signed manifest names a `url` is fetched over HTTP(S) on the worker thread
instead (`fetch`: TLS, the signed size, resume, retries while connected, stall limits), as the steps of a
catch-up `plan` when the announcement carries a chain of deltas. Signatures are checked by the door's `trust`
(one plain key, or keys an offline root certifies); the fleet's signed timestamp feeds `freshness`.
Rejection log lines and retained state publishes are rate-limited (`throttle`), and every
field from the network is bounded and made printable before it is logged or echoed.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.mqtt.payloads import GalleryState
from edgeface.mqtt.topics import (
    parse_fleet_gallery_chunk,
)
from edgeface.sync.apply import apply_payload, check_device, is_running, running_expired
from edgeface.sync.chunks import Announcement, ChunkAssembler, check_announcement, parse_announcement
from edgeface.sync.errors import Rejected
from edgeface.sync.fetch import Cancelled, Target, fetch_payload
from edgeface.sync.freshness import TimestampWatcher
from edgeface.sync.manifest import Manifest, parse_manifest
from edgeface.sync.plan import Step, UrlJob, catch_up
from edgeface.sync.settings import SyncClientSettings
from edgeface.sync.signing import Ed25519PublicKey
from edgeface.sync.throttle import LogLimiter, StateThrottle
from edgeface.sync.timestamp import Freshness
from edgeface.sync.trust import KeyTrust, Trust

log = logging.getLogger(__name__)


class Transport(Protocol):
    """What the client needs from an MQTT connection (QoS 1 everywhere)."""

    def subscribe(self, topic: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def publish_state(self, state: Mapping[str, Any]) -> None:
        """Retained on `{prefix}/{device}/gallery/state`."""

    def connected(self) -> bool:
        """True while the broker connection is up (URL fetches retry only then)."""


@dataclass(slots=True)
class _Download:
    manifest: Manifest
    announcement: Announcement
    assembler: ChunkAssembler
    timer: threading.Timer
    attempt: int = 0


class GallerySyncClient:
    """Keeps the device's gallery in step with its fleet's retained announcement (docs/design.md §4, §6)."""

    def __init__(
        self,
        config: SyncClientSettings,
        public_key: Ed25519PublicKey | Trust,
        store: GalleryStore,
        on_gallery: Callable[[Gallery], object],
        on_rejected: Callable[[str], None] | None = None,
        on_freshness: Callable[[Freshness], None] | None = None,
    ) -> None:
        self.config = config
        self._on_rejected = on_rejected  # rate-limited like the rejection log lines
        self._on_freshness = on_freshness
        self.policy = config.policy
        # a plain key (`sync.public_key`) or keys certified by a root (`sync.root_key`)
        self._trust: Trust = KeyTrust(public_key) if isinstance(public_key, Ed25519PublicKey) else public_key
        self._store = store
        self._on_gallery = on_gallery
        self._transport: Transport | None = None
        self._lock = threading.RLock()
        self._download: _Download | None = None
        self._url_job: UrlJob | None = None
        self._jobs: queue.Queue[tuple[Manifest, bytes, memoryview] | UrlJob | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="gallery-sync", daemon=True)
        self._rejections = LogLimiter(log, what="gallery rejections")
        self._states = StateThrottle(self._publish_state, interval_s=config.state_interval_s)
        self._running = self._load_running()
        self._timestamps = TimestampWatcher(
            config.fleet, config.timestamp_required, self._verify_timestamp, self._freshness_changed
        )
        self._reported_expired = False  # what check_expiry last reported
        self._state = self._state_of(
            self._running.version if self._running else None,
            "applied",
            "running the stored gallery" if self._running else "no gallery stored yet",
        )
        self._worker.start()

    # --- status for the daemon -------------------------------------------------------------------
    @property
    def gallery(self) -> Gallery | None:
        return self._running

    @property
    def running_version(self) -> int:
        return self._running.version if self._running is not None else 0

    @property
    def expired(self) -> bool:
        return running_expired(self._running)

    @property
    def freshness(self) -> Freshness:
        return self._timestamps.current()

    def check_expiry(self) -> bool | None:
        """The running gallery's expiry when it changed since the last call (True: it has just expired,
        False: a fresh one replaced an expired one), else None. The retained state follows it."""
        expired = self.expired
        if expired == self._reported_expired:
            return None
        self._reported_expired = expired
        self._set_state(dataclasses.replace(self._state, expired=expired))
        return expired

    @property
    def expires(self) -> str | None:
        return self._running.manifest.get("expires") if self._running is not None else None

    def matching_allowed(self) -> bool:
        """False when the running gallery expired or is stale and the policy is `deny`: no matches then."""
        return not ((self.expired or self.freshness.stale) and self.policy.expiry_policy == "deny")

    @property
    def last_state(self) -> GalleryState:
        return self._state

    def set_running(self, gallery: Gallery | None) -> None:
        """The daemon fell back to another stored gallery (damage on disk): judge bundles against it, and
        ask for the retained announcement again so a newer good bundle is fetched."""
        self._running = gallery
        if self._transport is not None:
            self._transport.subscribe(self.config.gallery_topic)

    # --- transport side --------------------------------------------------------------------------
    def attach(self, transport: Transport) -> None:
        self._transport = transport

    def on_connect(self) -> None:
        """(Re)subscribe and republish the retained state; call on every successful (re)connect."""
        transport = self._require_transport()
        transport.subscribe(self.config.gallery_topic)
        transport.subscribe(self.config.timestamp_topic)
        with self._lock:
            if self._download is not None:
                transport.subscribe(self.config.chunk_filter(self._download.manifest.version))
        self._states.force(self._state.payload())

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.config.gallery_topic:
            if payload:
                self._on_announcement(payload)
            return
        if topic == self.config.timestamp_topic:
            if payload:
                self._timestamps.offer(payload)
            return
        chunk = parse_fleet_gallery_chunk(self.config.prefix, self.config.fleet, topic)
        if chunk is not None and payload:
            self._on_chunk(*chunk, payload)

    # --- announcement and chunks (transport thread) -----------------------------------------------
    def _on_announcement(self, raw: bytes) -> None:
        version = None
        try:
            announcement = parse_announcement(raw, self.policy.max_payload)
            if announcement.revocations is not None:
                self._trust.offer_revocations(announcement.revocations)
            self._trust.verify(announcement.manifest, announcement.signature, announcement.cert)
            manifest = parse_manifest(announcement.manifest)
            version = manifest.version
            if is_running(manifest, self._running):
                log.debug("gallery %d already running", version)
                return
            check_device(manifest, self.policy, self._running)
            check_announcement(announcement, manifest)  # sizes are the signed ones: nothing allocated yet
            if manifest.url is not None:
                plan = catch_up(
                    Step(manifest, announcement.signature), self._chain(announcement), self.running_version
                )
                self._start_url(plan.steps, plan.fallback)
            else:
                self._start_download(manifest, announcement)
        except Rejected as exc:
            self._cancel_download()
            self._reject(version, exc)

    def _start_download(self, manifest: Manifest, announcement: Announcement) -> None:
        with self._lock:
            if self._download is not None and self._download.manifest.raw == manifest.raw:
                return
            self._cancel_download()
            timer = threading.Timer(self.config.fetch_timeout_s, self._on_timeout, args=(manifest.raw,))
            timer.daemon = True
            self._download = _Download(manifest, announcement, ChunkAssembler(announcement), timer)
            timer.start()
        log.info("gallery %d announced: fetching %d chunks", manifest.version, len(announcement.chunks))
        self._require_transport().subscribe(self.config.chunk_filter(manifest.version))

    def _chain(self, announcement: Announcement) -> tuple[Step, ...]:
        """The announcement's catch-up deltas whose signatures verify (a bad link only costs the full fetch)."""
        steps = []
        for raw, signature, cert in announcement.chain:
            try:
                self._trust.verify(raw, signature, cert)
                steps.append(Step(parse_manifest(raw), signature))
            except Rejected as exc:
                log.warning("catch-up chain ignored: %s", exc.reason)
                return ()
        return tuple(steps)

    def _start_url(self, steps: tuple[Step, ...], fallback: Step | None) -> None:
        with self._lock:
            current = self._url_job
            same = current is not None and [s.manifest.raw for s in current.steps] == [
                s.manifest.raw for s in steps
            ]
            if current is not None and same and not current.cancel.is_set():
                return
            self._cancel_download()
            self._url_job = UrlJob(steps, fallback, threading.Event())
            self._jobs.put(self._url_job)
        versions = " -> ".join(str(step.manifest.version) for step in steps)
        log.info("gallery %s announced: fetching by URL", versions)

    def _on_chunk(self, version: int, n: int, data: bytes) -> None:
        with self._lock:
            download = self._download
            if download is None or download.manifest.version != version:
                return
            try:
                if not download.assembler.add(n, data):
                    return
                payload = download.assembler.payload()
            except Rejected as exc:
                self._cancel_download()
                self._reject(version, exc)
                return
            self._cancel_download()
        self._jobs.put((download.manifest, download.announcement.signature, payload))

    def _on_timeout(self, raw: bytes) -> None:
        with self._lock:
            download = self._download
            if download is None or download.manifest.raw != raw:
                return
            missing = download.assembler.missing
            waited = self._wait_s(download.attempt)
            if download.attempt < self.config.fetch_retries:
                download.attempt += 1
                delay = self._wait_s(download.attempt)
                download.timer = threading.Timer(delay, self._on_timeout, args=(raw,))
                download.timer.daemon = True
                download.timer.start()
                retry = f"; retry {download.attempt}/{self.config.fetch_retries}, waiting {delay:g} s"
            else:
                self._cancel_download()
                retry = "; giving up until the next announcement or reconnect"
        detail = f"chunks {missing[:10]} missing after {waited:g} s{retry}"
        self._reject(download.manifest.version, Rejected("chunk_missing", detail))
        if self._download is download and self._transport is not None:  # ask for the retained chunks again
            self._transport.subscribe(self.config.chunk_filter(download.manifest.version))

    def _wait_s(self, attempt: int) -> float:
        return self.config.fetch_timeout_s if attempt == 0 else self.config.retry_delay(attempt)

    def _cancel_download(self) -> None:
        with self._lock:
            download, self._download = self._download, None
            url_job, self._url_job = self._url_job, None
        if url_job is not None:
            url_job.cancel.set()
        if download is not None:
            download.timer.cancel()
            if self._transport is not None:
                self._transport.unsubscribe(self.config.chunk_filter(download.manifest.version))

    # --- apply (worker thread) ---------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if isinstance(job, UrlJob):
                self._run_url(job)
                continue
            manifest, signature, payload = job
            try:
                self._apply(manifest, signature, payload)
            except Rejected as exc:
                self._reject(manifest.version, exc)
            except Exception as exc:  # keep the last good gallery whatever happened
                log.exception("applying gallery %d failed", manifest.version)
                self._reject(manifest.version, Rejected("apply_failed", f"{type(exc).__name__}: {exc}"))

    def _run_url(self, job: UrlJob) -> None:
        """Fetch and apply each step; a failed step falls back to the full bundle (each step is a whole,
        verified gallery, so a door is never left between versions)."""
        for step in job.steps:
            if not self._fetch_and_apply(step, job.cancel):
                if job.fallback is not None and not job.cancel.is_set():
                    log.info("catch-up stopped at %d: fetching the full bundle", self.running_version)
                    self._fetch_and_apply(job.fallback, job.cancel)
                break
        with self._lock:
            if self._url_job is job:
                self._url_job = None

    def _fetch_and_apply(self, step: Step, cancel: threading.Event) -> bool:
        manifest, binding = step.manifest, step.manifest.payload
        if is_running(manifest, self._running):
            return True
        if manifest.url is None or binding is None:  # the parser guarantees both for URL steps
            return False
        connected = self._transport.connected if self._transport is not None else lambda: True
        try:
            check_device(manifest, self.policy, self._running)  # before any byte is fetched
            target = Target(manifest.url, binding.size, binding.sha256)
            payload = fetch_payload(target, self.config.url, cancel, connected)
            self._apply(manifest, step.signature, memoryview(payload))
            return True
        except Cancelled:
            return False
        except Rejected as exc:
            self._reject(manifest.version, exc)
        except Exception as exc:  # keep the last good gallery whatever happened
            log.exception("applying gallery %d failed", manifest.version)
            self._reject(manifest.version, Rejected("apply_failed", f"{type(exc).__name__}: {exc}"))
        return False

    def _apply(self, manifest: Manifest, signature: bytes, payload: memoryview) -> None:
        if is_running(manifest, self._running):  # re-delivered while it was being applied
            return
        gallery, warning = apply_payload(
            self._store, self.policy, manifest, signature, payload, self._running
        )
        self._running = gallery
        self._on_gallery(gallery)
        log.info("gallery %d applied (%d identities)", gallery.version, len(gallery))
        self._set_state(self._state_of(gallery.version, "applied", warning))

    # --- state ---------------------------------------------------------------------------------------
    def _load_running(self) -> Gallery | None:
        if not self._store.exists():
            return None
        try:
            gallery = self._store.load()
        except GalleryError:
            log.exception("stored gallery unreadable; starting without one")
            return None
        if gallery.model_sha256 != self.policy.model_sha256:
            log.error(
                "stored gallery %d was made for model %s, this device runs %s: ignoring it until a new bundle",
                gallery.version,
                gallery.model_sha256[:12],
                self.policy.model_sha256[:12],
            )
            return None
        return gallery

    def _reject(self, version: int | None, exc: Rejected) -> None:
        # exc.reason is bounded and printable (errors.Rejected); version is a parsed integer or None
        logged = self._rejections.log(
            "gallery %s rejected: %s (keeping %d)", version, exc.reason, self.running_version
        )
        if logged and self._on_rejected is not None:
            self._on_rejected(f"gallery {version}: {exc.reason}")
        self._set_state(self._state_of(version, "rejected", exc.reason))

    def _verify_timestamp(self, record: bytes, signature: bytes, cert: bytes | None) -> None:
        self._trust.verify(record, signature, cert)

    def _freshness_changed(self, freshness: Freshness) -> None:
        """Re-publish the state with the new freshness; tell the daemon (status, incidents)."""
        self._set_state(dataclasses.replace(self._state, freshness=freshness.as_dict()))
        if self._on_freshness is not None:
            self._on_freshness(freshness)

    def _state_of(
        self, version: int | None, status: Literal["applied", "rejected"], reason: str | None
    ) -> GalleryState:
        return GalleryState(
            version,
            status,
            reason,
            running=self.running_version,
            fleet=self.config.fleet,
            expired=self.expired,
            freshness=self._timestamps.current().as_dict() if hasattr(self, "_timestamps") else None,
        )

    def _set_state(self, state: GalleryState) -> None:
        self._state = state
        self._states.offer(state.payload())

    def _publish_state(self, state: Mapping[str, Any]) -> None:
        if self._transport is not None:
            self._transport.publish_state(state)

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("GallerySyncClient: attach(transport) before connecting")
        return self._transport

    def close(self) -> None:
        self._cancel_download()
        self._jobs.put(None)
        self._worker.join(timeout=30)
        self._states.close()
        self._rejections.close()
        self._timestamps.close()
