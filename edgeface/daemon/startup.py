"""The daemon's own settings from the config: stored-gallery recovery, fleet sync.

Models, gallery, index, decision rule and publisher are built by `edgeface.daemon.parts`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeface.config import Config
from edgeface.daemon.parts import ModelIdentity, check_gallery, models_dir
from edgeface.identity.gallery import GalleryStore
from edgeface.identity.live import GoLive, LiveGallery
from edgeface.identity.recovery import Recovery, recover_gallery
from edgeface.vision.modelcard import load_card

if TYPE_CHECKING:
    from edgeface.mqtt.client import MqttPublisher
    from edgeface.sync.client import GallerySyncClient
    from edgeface.sync.timestamp import Freshness
    from edgeface.sync.updater import IndexUpdater

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CardModel:
    """The embedder a gallery must fit, read from its card alone (before the model is loaded)."""

    name: str
    sha256: str
    dim: int


def stored_gallery_problems(config: Config) -> str | None:
    """For `doctor`: what the daemon would set aside at start, and what it would run; changes nothing."""
    recovery = recover_stored_gallery(config, repair=False)
    if not recovery.fell_back:
        return None
    return f"{config.gallery_dir}: {recovery.summary()} (the daemon sets the damaged versions aside)"


def recover_stored_gallery(
    config: Config, model: ModelIdentity | None = None, *, repair: bool = True
) -> Recovery:
    """The newest stored gallery version that is whole and fits the embedder; damaged or unfitting
    versions are moved aside and `current` re-pointed (`edgeface.identity.recovery`)."""
    if model is None:
        card = load_card(models_dir(config) / config.embedder.card)
        model = CardModel(card.name, card.sha256, card.output_dim)
    fits = model
    return recover_gallery(
        GalleryStore(config.gallery_dir),
        lambda gallery: check_gallery(gallery, fits, config.gallery_dir, models_dir(config)),
        repair=repair,
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
    live: GoLive,
    model_sha256: str,
    on_applied: Callable[[LiveGallery], None],
    dim: int | None = None,
    on_rejected: Callable[[str], None] | None = None,
    on_freshness: Callable[[Freshness], None] | None = None,
) -> SyncParts | None:
    """Fleet sync over the daemon's own MQTT connection: verified bundles are stored atomically, then
    a worker makes them live through `live` (recognition keeps using the old gallery meanwhile)."""
    if not config.sync.enabled:
        return None
    from edgeface.sync.apply import DevicePolicy
    from edgeface.sync.client import GallerySyncClient
    from edgeface.sync.mqtt import PublisherTransport
    from edgeface.sync.settings import SyncClientSettings
    from edgeface.sync.trust import door_trust
    from edgeface.sync.updater import IndexUpdater

    updater = IndexUpdater(live, on_live=lambda gallery, _: on_applied(gallery))
    client = GallerySyncClient(
        SyncClientSettings(
            DevicePolicy(
                fleet=config.device.fleet,
                model_sha256=model_sha256,
                expiry_policy=config.sync.expiry_policy,
                max_version_jump=config.sync.max_version_jump,
                dim=dim,
            ),
            device_id=config.device.id,
            prefix=config.mqtt.prefix,
            url=config.sync.url,
            timestamp_required=config.sync.timestamp_required,
        ),
        door_trust(config.sync.public_key, config.sync.root_key, config.gallery_dir),
        GalleryStore(config.gallery_dir),
        on_gallery=updater.apply,  # on the sync worker thread: verify, store, go live
        on_rejected=on_rejected,
        on_freshness=on_freshness,
    )
    PublisherTransport.attach_to(publisher, client)
    return SyncParts(client, updater)
