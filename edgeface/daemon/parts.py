"""The one builder of parts: config -> detector, refiner, embedder, encoder, gallery, index and rule, publisher.

The daemon, `doctor`, the demo, the CLI verbs and the benchmarks all build here, so the face path and the
decision rule exist once. Photos (`photos=True`) get the detector cascade that finds faces filling the frame;
camera frames get the configured single detector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edgeface.config import Config
from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.index import IndexSettings
from edgeface.identity.live import GoLive, LiveGallery, RuleFor
from edgeface.identity.rule import CardFallback, MatchRule, resolve_rule
from edgeface.util.paths import default_models_dir
from edgeface.vision.detect import FaceDetector
from edgeface.vision.embed import Embedder
from edgeface.vision.encoder import CascadeDetector, FaceEncoder
from edgeface.vision.landmarks import LandmarkRefiner
from edgeface.vision.modelcard import embedder_named

if TYPE_CHECKING:
    from edgeface.mqtt.client import MqttPublisher
    from edgeface.mqtt.homeassistant import HomeAssistant
    from edgeface.mqtt.payloads import StatusInfo

log = logging.getLogger(__name__)


def models_dir(config: Config) -> Path:
    return config.embedder.models_dir or default_models_dir()


def build_encoder(config: Config, *, photos: bool = False) -> FaceEncoder:
    """The face path. Photos: full- then short-range BlazeFace, each also on bordered copies."""
    models = models_dir(config)
    threads = config.embedder.num_threads
    embedder = Embedder(models / config.embedder.card, num_threads=threads)
    refiner = LandmarkRefiner(models, num_threads=threads) if config.embedder.refine_landmarks else None
    detector: FaceDetector | CascadeDetector
    if photos:
        ranges = [config.detector.model, *(m for m in ("full", "short") if m != config.detector.model)]
        detector = CascadeDetector(
            [FaceDetector(models, m, threads, config.detector.min_score, pad_retry=False) for m in ranges]
        )
    else:
        detector = FaceDetector(
            models,
            config.detector.model,
            threads,
            config.detector.min_score,
            pad_retry=config.detector.pad_retry,
        )
    return FaceEncoder(detector, embedder, refiner, flip=config.embedder.flip)


def index_settings(config: Config) -> IndexSettings:
    g = config.gallery
    return IndexSettings(
        kind=g.index,
        exact_below=g.exact_below,
        m=g.hnsw_m,
        ef_construction=g.hnsw_ef_construction,
        ef=g.hnsw_ef,
    )


def decision_rule(config: Config, gallery: Gallery, embedder: Embedder) -> MatchRule:
    rule = resolve_rule(
        threshold=config.match.threshold,
        margin=config.match.margin,
        calibration=gallery.calibration,
        card=CardFallback.of_card(embedder.card),
        identities=len(gallery),
    )
    if rule.source == "card" and len(gallery):
        log.warning("threshold %.4f: %s", rule.threshold, rule.detail)
    return rule


class ModelIdentity(Protocol):
    """What a gallery must fit: an `Embedder`, or a model card's name, sha256 and output dim."""

    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def dim(self) -> int: ...


def check_gallery(
    gallery: Gallery, embedder: ModelIdentity, where: Path, models: Path | None = None
) -> Gallery:
    """Refuse a gallery this embedder cannot search: another model, or vectors of another size. The message
    names both models (card name and short sha, looked up among the cards in `models`) and the rebuild."""
    if gallery.model_sha256 != embedder.sha256:
        made_with = embedder_named(models or default_models_dir(), gallery.model_sha256)
        raise GalleryError(
            f"{where}: gallery was enrolled with {made_with}, this embedder is {embedder.name} "
            f"(sha {embedder.sha256[:12]}); it never decides here. Rebuild it with this embedder: "
            f"`edgeface enroll --gallery NEW_FOLDER --folders PHOTOS` (or `edgeface gallery build` and sync)"
        )
    if gallery.dim != embedder.dim:
        raise GalleryError(
            f"{where}: gallery vectors are {gallery.dim}-d, the embedder gives {embedder.dim}-d"
        )
    return gallery


def load_gallery(config: Config, embedder: Embedder) -> Gallery:
    """The gallery on disk, checked against the embedder; an empty one when there is none yet."""
    store = GalleryStore(config.gallery_dir)
    if not store.exists():
        log.warning(
            "no gallery at %s yet: every face is 'unknown' until one is enrolled or synced", store.root
        )
        return Gallery.empty(embedder.dim, embedder.sha256)
    return check_gallery(store.load(), embedder, config.gallery_dir, models_dir(config))


def rule_for(config: Config, embedder: Embedder) -> RuleFor:
    """How `config` and the embedder's card decide for a gallery (`GoLive` asks it at each go-live)."""
    return lambda gallery: decision_rule(config, gallery, embedder)


@dataclass
class Parts:
    """Everything recognition needs, built from one config; `close()` releases the models."""

    config: Config
    encoder: FaceEncoder
    live: GoLive

    @property
    def embedder(self) -> Embedder:
        return self.encoder.embedder

    @property
    def gallery(self) -> Gallery:
        return self.live.current.gallery

    @property
    def rule(self) -> MatchRule:
        return self.live.current.rule

    def use_gallery(self, gallery: Gallery, config: Config | None = None) -> LiveGallery:
        """Make another gallery live (a reload, with its config); its index and rule go live together."""
        config = config or self.config
        check_gallery(gallery, self.embedder, config.gallery_dir, models_dir(config))
        live = self.live.publish(gallery, rule_for(config, self.embedder), index_settings(config))
        self.config = config
        return live

    def close(self) -> None:
        self.encoder.close()


def build_parts(config: Config, *, photos: bool = False, gallery: Gallery | None = None) -> Parts:
    encoder = build_encoder(config, photos=photos)
    try:
        # `is not None`: a Gallery with no identities is falsy (len 0), and a given empty one is still given.
        if gallery is not None:
            chosen = check_gallery(gallery, encoder.embedder, config.gallery_dir, models_dir(config))
        else:
            chosen = load_gallery(config, encoder.embedder)
        live = GoLive(chosen, rule_for(config, encoder.embedder), index_settings(config))
    except BaseException:
        encoder.close()
        raise
    return Parts(config, encoder, live)


def build_publisher(config: Config, status: StatusInfo) -> MqttPublisher:
    from edgeface.mqtt.client import MqttPublisher

    return MqttPublisher(config.mqtt, status)


def build_homeassistant(config: Config, publisher: MqttPublisher, model_name: str) -> HomeAssistant:
    """Discovery, presence and the opt-in snapshot over the daemon's own connection (see `attach`)."""
    from edgeface.mqtt.discovery import DoorInfo
    from edgeface.mqtt.homeassistant import HomeAssistant
    from edgeface.version import __version__

    info = DoorInfo(model_name, __version__, config.homeassistant.configuration_url)
    return HomeAssistant(publisher, config.homeassistant, info)
