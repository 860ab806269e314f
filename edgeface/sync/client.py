"""Device side of gallery sync, transport-agnostic: announcement -> chunks -> checks -> apply -> state.

Messages arrive on the transport's thread; they only parse the announcement, check its signature and buffer
chunks. Verifying the payload, writing the gallery and calling `on_gallery` (index build + swap) run on this
client's own worker thread, so neither the network loop nor recognition waits for them.

A fetch that times out is retried while connected: the chunk topics are subscribed again (the broker
re-sends their retained messages) after `fetch_timeout_s`, then twice that, and so on up to
`fetch_backoff_max_s`, `fetch_retries` times; each timeout reports `chunk_missing` (with "retrying") in the
retained state. Rejection log lines and retained state publishes are rate-limited (`throttle`), and every
field from the network is bounded and made printable before it is logged or echoed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.mqtt.payloads import gallery_state_payload
from edgeface.mqtt.topics import DeviceTopics, fleet_gallery, fleet_gallery_chunks, parse_fleet_gallery_chunk
from edgeface.sync.apply import DevicePolicy, apply_payload, check_device, is_running, running_expired
from edgeface.sync.bundle import MAX_PAYLOAD, check_signature
from edgeface.sync.chunks import Announcement, ChunkAssembler, check_announcement, parse_announcement
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import Manifest, parse_manifest
from edgeface.sync.signing import Ed25519PublicKey
from edgeface.sync.throttle import LogLimiter, StateThrottle
from edgeface.sync.validate import DEFAULT_MAX_VERSION_JUMP, valid_fleet

log = logging.getLogger(__name__)


class Transport(Protocol):
    """What the client needs from an MQTT connection (QoS 1 everywhere)."""

    def subscribe(self, topic: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def publish_state(self, state: Mapping[str, Any]) -> None:
        """Retained on `{prefix}/{device}/gallery/state`."""


@dataclass(frozen=True, slots=True)
class SyncClientSettings:
    fleet: str
    device_id: str
    model_sha256: str
    prefix: str = "edgeface"
    expiry_policy: str = "warn"  # "warn" | "deny"
    max_payload: int = MAX_PAYLOAD
    fetch_timeout_s: float = 30.0
    fetch_retries: int = 5  # re-subscriptions after the first timeout, then `chunk_missing` for good
    fetch_backoff_max_s: float = 300.0
    max_version_jump: int = DEFAULT_MAX_VERSION_JUMP
    dim: int | None = None  # the embedder's output size: a bundle of another `dim` is refused
    state_interval_s: float = 1.0  # retained state: a burst of 5, then at most one per interval

    def __post_init__(self) -> None:
        valid_fleet(self.fleet)
        if not (self.fetch_timeout_s > 0 and self.fetch_backoff_max_s >= self.fetch_timeout_s):
            raise ValueError("sync: need fetch_timeout_s > 0 and fetch_backoff_max_s >= fetch_timeout_s")
        if self.fetch_retries < 0 or self.state_interval_s <= 0:
            raise ValueError("sync: fetch_retries must be >= 0 and state_interval_s > 0")

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait for the chunks after re-subscription `attempt` (1, 2, ...): doubling, capped."""
        return min(self.fetch_timeout_s * 2.0 ** min(attempt, 32), self.fetch_backoff_max_s)

    @property
    def gallery_topic(self) -> str:
        return fleet_gallery(self.prefix, self.fleet)

    def chunk_filter(self, version: int | None = None) -> str:
        """Subscription filter for gallery `version`'s chunks (every version's when None)."""
        return fleet_gallery_chunks(self.prefix, self.fleet, version)

    @property
    def state_topic(self) -> str:
        return DeviceTopics(self.prefix, self.device_id).gallery_state


@dataclass(slots=True)
class _Download:
    manifest: Manifest
    announcement: Announcement
    assembler: ChunkAssembler
    timer: threading.Timer
    attempt: int = 0


class GallerySyncClient:
    """Keeps the device's gallery in step with its fleet's retained announcement (DESIGN §4, §6)."""

    def __init__(
        self,
        config: SyncClientSettings,
        public_key: Ed25519PublicKey,
        store: GalleryStore,
        on_gallery: Callable[[Gallery], object],
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._on_rejected = on_rejected  # rate-limited like the rejection log lines
        self.policy = DevicePolicy(
            config.fleet,
            config.model_sha256,
            config.expiry_policy,
            config.max_payload,
            config.max_version_jump,
            config.dim,
        )
        self._key = public_key
        self._store = store
        self._on_gallery = on_gallery
        self._transport: Transport | None = None
        self._lock = threading.RLock()
        self._download: _Download | None = None
        self._jobs: queue.Queue[tuple[Manifest, bytes, memoryview] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="gallery-sync", daemon=True)
        self._rejections = LogLimiter(log, what="gallery rejections")
        self._states = StateThrottle(self._publish_state, interval_s=config.state_interval_s)
        self._running = self._load_running()
        self._reported_expired = False  # what check_expiry last reported
        self._state = self._state_payload(
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

    def check_expiry(self) -> bool | None:
        """The running gallery's expiry when it changed since the last call (True: it has just expired,
        False: a fresh one replaced an expired one), else None. The retained state follows it."""
        expired = self.expired
        if expired == self._reported_expired:
            return None
        self._reported_expired = expired
        self._set_state(dict(self._state) | {"expired": expired})
        return expired

    @property
    def expires(self) -> str | None:
        return self._running.manifest.get("expires") if self._running is not None else None

    def matching_allowed(self) -> bool:
        """False when the running gallery expired and the policy is `deny`: announce no matches then."""
        return not (self.expired and self.policy.expiry_policy == "deny")

    @property
    def last_state(self) -> dict:
        return dict(self._state)

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
        with self._lock:
            if self._download is not None:
                transport.subscribe(self.config.chunk_filter(self._download.manifest.version))
        self._states.force(self._state)

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.config.gallery_topic:
            if payload:
                self._on_announcement(payload)
            return
        chunk = parse_fleet_gallery_chunk(self.config.prefix, self.config.fleet, topic)
        if chunk is not None and payload:
            self._on_chunk(*chunk, payload)

    # --- announcement and chunks (transport thread) -----------------------------------------------
    def _on_announcement(self, raw: bytes) -> None:
        version = None
        try:
            announcement = parse_announcement(raw, self.config.max_payload)
            check_signature(announcement.manifest, announcement.signature, self._key)
            manifest = parse_manifest(announcement.manifest)
            version = manifest.version
            if is_running(manifest, self._running):
                log.debug("gallery %d already running", version)
                return
            check_device(manifest, self.policy, self._running)
            check_announcement(announcement, manifest)  # sizes are the signed ones: nothing allocated yet
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
        if download is not None:
            download.timer.cancel()
            if self._transport is not None:
                self._transport.unsubscribe(self.config.chunk_filter(download.manifest.version))

    # --- apply (worker thread) ---------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            manifest, signature, payload = job
            try:
                self._apply(manifest, signature, payload)
            except Rejected as exc:
                self._reject(manifest.version, exc)
            except Exception as exc:  # keep the last good gallery whatever happened
                log.exception("applying gallery %d failed", manifest.version)
                self._reject(manifest.version, Rejected("apply_failed", f"{type(exc).__name__}: {exc}"))

    def _apply(self, manifest: Manifest, signature: bytes, payload: memoryview) -> None:
        if is_running(manifest, self._running):  # re-delivered while it was being applied
            return
        gallery, warning = apply_payload(
            self._store, self.policy, manifest, signature, payload, self._running
        )
        self._running = gallery
        self._on_gallery(gallery)
        log.info("gallery %d applied (%d identities)", gallery.version, len(gallery))
        self._set_state(self._state_payload(gallery.version, "applied", warning))

    # --- state ---------------------------------------------------------------------------------------
    def _load_running(self) -> Gallery | None:
        if not self._store.exists():
            return None
        try:
            gallery = self._store.load()
        except GalleryError:
            log.exception("stored gallery unreadable; starting without one")
            return None
        if gallery.model_sha256 != self.config.model_sha256:
            log.error(
                "stored gallery %d was made for model %s, this device runs %s: ignoring it until a new bundle",
                gallery.version,
                gallery.model_sha256[:12],
                self.config.model_sha256[:12],
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
        self._set_state(self._state_payload(version, "rejected", exc.reason))

    def _state_payload(self, version: int | None, status: str, reason: str | None) -> dict:
        extra = {"running": self.running_version, "fleet": self.config.fleet, "expired": self.expired}
        return gallery_state_payload(version, status, reason) | extra

    def _set_state(self, state: dict) -> None:
        self._state = state
        self._states.offer(state)

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
