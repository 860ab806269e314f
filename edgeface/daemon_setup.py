"""Turning the validated config into the daemon's parts: models, gallery, camera, MQTT, sync."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeface.camera import CameraSpec
from edgeface.config import Config
from edgeface.detect import FaceDetector
from edgeface.embed import Embedder
from edgeface.errors import ConfigError, GalleryError
from edgeface.gallery import Gallery, GalleryStore
from edgeface.index import GalleryIndex, IndexHolder, IndexSettings
from edgeface.landmarks import LandmarkRefiner
from edgeface.match import MatchSettings
from edgeface.mqtt.settings import MqttSettings, TlsSettings
from edgeface.paths import default_models_dir
from edgeface.quality import QualitySettings
from edgeface.recognize import DecisionSettings

if TYPE_CHECKING:
    from edgeface.mqtt.client import MqttPublisher
    from edgeface.sync.client import GallerySyncClient
    from edgeface.sync.updater import IndexUpdater

log = logging.getLogger(__name__)


def load_models(config: Config) -> tuple[FaceDetector, Embedder, LandmarkRefiner | None]:
    models = config.embedder.models_dir or default_models_dir()
    threads = config.embedder.num_threads
    embedder = Embedder(models / config.embedder.card, num_threads=threads)
    detector = FaceDetector(
        models,
        model=config.detector.model,
        num_threads=threads,
        min_score=config.detector.min_score,
        pad_retry=config.detector.pad_retry,
    )
    refiner = LandmarkRefiner(models, num_threads=threads) if config.embedder.refine_landmarks else None
    return detector, embedder, refiner


def load_gallery(config: Config, model_sha256: str) -> Gallery:
    """The last good gallery on disk; an empty one (everyone unknown) when there is none yet."""
    store = GalleryStore(config.gallery_dir)
    if not store.exists():
        log.warning(
            "no gallery at %s yet: every face will be 'unknown' until one is enrolled or synced",
            config.gallery_dir,
        )
        return Gallery.empty(_dim_of(config), model_sha256)
    gallery = store.load()
    if gallery.model_sha256 != model_sha256:
        raise GalleryError(
            f"{config.gallery_dir}: gallery was made for model {gallery.model_sha256[:12]}..., "
            f"the configured embedder is {model_sha256[:12]}...; re-enroll or sync a matching gallery"
        )
    return gallery


def _dim_of(config: Config) -> int:
    from edgeface.modelcard import load_card

    return load_card((config.embedder.models_dir or default_models_dir()) / config.embedder.card).output_dim


def config_index_settings(config: Config) -> IndexSettings:
    g = config.gallery
    return IndexSettings(kind=g.index, exact_below=g.exact_below, m=g.hnsw_m, ef=g.hnsw_ef)


def match_settings(config: Config, card: dict) -> MatchSettings:
    """`match.threshold` from the config, else the one `edgeface eval --record` wrote into the card."""
    recommended = card.get("decision", {})
    threshold = config.match.threshold if config.match.threshold is not None else recommended.get("threshold")
    if threshold is None:
        raise ConfigError("match.threshold: not set and the embedder card records none; run `edgeface eval`")
    margin = config.match.margin if config.match.margin is not None else recommended.get("margin", 0.0)
    return MatchSettings(float(threshold), float(margin))


def quality_settings(config: Config) -> QualitySettings:
    m = config.match
    return QualitySettings(m.min_face_px, m.min_sharpness, m.max_yaw, m.min_brightness, m.max_brightness)


def decision_settings(config: Config) -> DecisionSettings:
    m = config.match
    return DecisionSettings(m.min_frames, m.max_wait_ms / 1000, m.cooldown_s, config.detector.every_n_frames)


def camera_spec(config: Config) -> CameraSpec:
    c = config.camera
    device: int | str | None = c.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    if c.kind == "picamera2" and device is None:
        device = 0
    return CameraSpec(
        kind=c.kind,
        name=c.name,
        device=device,
        url=c.url,
        pipeline=c.pipeline,
        path=c.path,
        faces=c.faces,
        width=c.width,
        height=c.height,
        fps=c.fps,
        realtime=c.realtime,
        loop=c.loop,
        lores_width=c.lores_width,
        reconnect=c.reconnect,
        backoff_max_s=c.backoff_max_s,
        stall_timeout_s=c.stall_timeout_s,
        seed=c.seed,
    )


def mqtt_settings(config: Config) -> MqttSettings:
    m = config.mqtt
    tls = None
    if m.ca_file or m.cert_file:
        tls = TlsSettings(m.ca_file, m.cert_file, m.key_file, m.tls_insecure)
    return MqttSettings(
        device=config.device.id,
        host=m.host,
        port=m.port,
        client_id=m.client_id,
        prefix=m.prefix,
        protocol=m.protocol,
        keepalive=m.keepalive,
        tls=tls,
        credentials_file=m.credentials_file,
        spool_path=config.device.state_dir / "spool.sqlite3",
        spool_max_events=m.spool_max_events,
        ha_discovery=m.ha_discovery,
        max_inflight=m.max_inflight,
    )


@dataclass
class SyncParts:
    """The fleet gallery client and the index updater it feeds."""

    client: GallerySyncClient
    updater: IndexUpdater

    def matching_allowed(self) -> bool:
        return self.client.matching_allowed()

    def close(self) -> None:
        self.client.close()


def start_sync(
    config: Config,
    publisher: MqttPublisher,
    holder: IndexHolder,
    model_sha256: str,
    on_applied: Callable[[GalleryIndex], None],
) -> SyncParts | None:
    """Fleet sync over the daemon's own MQTT connection: verified bundles are stored atomically, then
    a worker builds the new index and swaps it in (recognition keeps using the old one meanwhile)."""
    if not config.sync.enabled or config.sync.public_key is None:
        return None
    from edgeface.sync.client import GallerySyncClient
    from edgeface.sync.client import SyncConfig as ClientSyncConfig
    from edgeface.sync.mqtt import PublisherTransport
    from edgeface.sync.signing import load_public_key
    from edgeface.sync.updater import IndexUpdater

    updater = IndexUpdater(
        holder, config_index_settings(config), on_swapped=lambda index, _: on_applied(index)
    )
    client = GallerySyncClient(
        ClientSyncConfig(
            fleet=config.device.fleet,
            device_id=config.device.id,
            model_sha256=model_sha256,
            prefix=config.mqtt.prefix,
            expiry=config.sync.expiry_policy,
        ),
        load_public_key(config.sync.public_key),
        GalleryStore(config.gallery_dir),
        on_gallery=updater.apply,  # on the sync worker thread: verify, store, build, swap
    )
    PublisherTransport.attach_to(publisher, client)
    return SyncParts(client, updater)
