"""`daemon_setup`: the stored gallery the daemon starts on (`recover_stored_gallery`, and `doctor`'s dry run of
it) and the fleet sync it starts (`start_sync`), with a real store, the real card and a real broker.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from edgeface.config import Config, SyncConfig, parse_config
from edgeface.daemon.parts import build_publisher
from edgeface.daemon.startup import CardModel, recover_stored_gallery, start_sync, stored_gallery_problems
from edgeface.errors import ConfigError
from edgeface.identity.gallery import GalleryStore
from edgeface.identity.index import IndexSettings
from edgeface.identity.live import LiveGallery
from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.payloads import StatusInfo
from edgeface.server.build import build_bundle
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.modelcard import load_card
from tests.conftest import Broker
from tests.factories import (
    FLEET,
    MODEL,
    PREFIX,
    go_live,
    make_gallery,
    make_keys,
    raw_publish,
    read_retained,
    wait_for,
)

CARD = DEFAULT_EMBEDDER_CARD


@pytest.fixture
def card_only(tmp_path: Path, models_dir: Path) -> Path:
    """A models folder holding the embedder's card and nothing else: no model can be loaded from it."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models_dir / CARD, folder / CARD)
    return folder


def config_for(tmp_path: Path, models: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "device": {"id": "door1", "fleet": FLEET, "state_dir": str(tmp_path / "state")},
        "embedder": {"models_dir": str(models)},
    }
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    return parse_config(raw)


# --- recover_stored_gallery -------------------------------------------------------------------------------
def test_the_gallery_is_checked_against_the_card_without_loading_the_model(
    tmp_path: Path, card_only: Path
) -> None:
    sha = load_card(card_only / CARD).sha256
    config = config_for(tmp_path, card_only)
    store = GalleryStore(config.gallery_dir)
    store.save(make_gallery(4, model=sha, version=1))
    store.save(make_gallery(4, model=sha, version=2, dim=64))  # the card says 128-d
    recovery = recover_stored_gallery(config)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert [s.version for s in recovery.set_aside] == ["000000000002"]
    assert "64-d, the embedder gives 128-d" in recovery.set_aside[0].reason
    assert store.load().version == 1  # repaired: `current` re-pointed, the unfitting version set aside


def test_a_gallery_for_another_model_is_set_aside(tmp_path: Path, card_only: Path) -> None:
    sha = load_card(card_only / CARD).sha256
    config = config_for(tmp_path, card_only)
    store = GalleryStore(config.gallery_dir)
    store.save(make_gallery(4, model=sha, version=1))
    store.save(make_gallery(4, model="cd" * 32, version=2))
    recovery = recover_stored_gallery(config)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert "gallery was enrolled with an embedder with no card in" in recovery.set_aside[0].reason
    assert "(sha cdcdcdcdcdcd)" in recovery.set_aside[0].reason


def test_a_given_model_identity_replaces_the_card(tmp_path: Path, card_only: Path) -> None:
    config = config_for(tmp_path, card_only)
    GalleryStore(config.gallery_dir).save(make_gallery(4, model="cd" * 32, version=1))
    recovery = recover_stored_gallery(config, CardModel("other", "cd" * 32, 128), repair=False)
    assert recovery.gallery is not None and recovery.gallery.version == 1 and not recovery.fell_back


def test_nothing_stored_recovers_nothing_and_doctor_reports_no_problem(
    tmp_path: Path, card_only: Path
) -> None:
    config = config_for(tmp_path, card_only)
    recovery = recover_stored_gallery(config)
    assert recovery.gallery is None and not recovery.fell_back
    assert stored_gallery_problems(config) is None


def test_doctor_reports_what_the_daemon_would_set_aside_and_changes_nothing(
    tmp_path: Path, card_only: Path
) -> None:
    sha = load_card(card_only / CARD).sha256
    config = config_for(tmp_path, card_only)
    store = GalleryStore(config.gallery_dir)
    store.save(make_gallery(4, model=sha, version=1))
    assert stored_gallery_problems(config) is None
    store.save(make_gallery(4, model="cd" * 32, version=2))
    problem = stored_gallery_problems(config)
    assert problem is not None and problem.startswith(f"{config.gallery_dir}: version 000000000002: ")
    assert problem.endswith("-> running version 1 (the daemon sets the damaged versions aside)")
    assert store.load().version == 2 and not (config.gallery_dir / "set-aside").exists()


# --- start_sync -----------------------------------------------------------------------------------------
@pytest.fixture
def publisher(tmp_path: Path, card_only: Path) -> Any:
    made: list[MqttPublisher] = []

    def build(config: Config) -> MqttPublisher:
        made.append(build_publisher(config, StatusInfo("0", None, 0, "m", MODEL)))
        return made[-1]

    yield build
    for p in made:
        p.close(flush_timeout=1)


def test_sync_is_not_started_when_disabled(tmp_path: Path, card_only: Path, publisher) -> None:
    config = config_for(tmp_path, card_only, mqtt={"port": 1})
    live = go_live(make_gallery(2))
    assert not config.sync.enabled
    assert start_sync(config, publisher(config), live, MODEL, lambda live: None) is None
    # `enabled` without a key can neither be parsed from a file nor built in code: the type refuses it.
    with pytest.raises(ConfigError, match=r"sync\.public_key: required when sync\.enabled is true"):
        SyncConfig(enabled=True)


def test_sync_takes_its_settings_from_the_config(tmp_path: Path, card_only: Path, publisher) -> None:
    keys = make_keys(tmp_path / "keys")
    config = config_for(
        tmp_path,
        card_only,
        mqtt={"port": 1, "prefix": "site7"},
        sync={"enabled": True, "public_key": str(keys.public_path), "expiry_policy": "deny"},
    )
    live = go_live(make_gallery(2))
    sync = start_sync(config, publisher(config), live, MODEL, lambda live: None, dim=128)
    assert sync is not None
    try:
        settings = sync.client.config
        assert (settings.policy.fleet, settings.device_id, settings.prefix) == (FLEET, "door1", "site7")
        assert (settings.policy.model_sha256, settings.policy.expiry_policy, settings.policy.dim) == (
            MODEL,
            "deny",
            128,
        )
        assert settings.gallery_topic == f"site7/fleet/{FLEET}/gallery"
        assert sync.updater.live is live and sync.matching_allowed()
    finally:
        sync.close()


@pytest.mark.broker
def test_a_signed_bundle_is_stored_indexed_and_swapped_in(
    broker: Broker, tmp_path: Path, card_only: Path, publisher
) -> None:
    keys = make_keys(tmp_path / "keys")
    config = config_for(
        tmp_path,
        card_only,
        mqtt={"host": broker.host, "port": broker.port, "prefix": PREFIX},
        sync={"enabled": True, "public_key": str(keys.public_path)},
    )
    live = go_live(make_gallery(2), settings=IndexSettings(kind="hnsw"))
    applied: list[LiveGallery] = []
    done = threading.Event()

    def on_applied(gallery: LiveGallery) -> None:
        applied.append(gallery)
        assert live.current is gallery  # called once it is live
        done.set()

    client = publisher(config)
    client.start()
    sync = start_sync(config, client, live, MODEL, on_applied, dim=128)
    assert sync is not None
    try:
        bundle = unpack_bundle(
            build_bundle(make_gallery(5, seed=3), fleet=FLEET, version=3, key=keys.private)
        )
        chunks = split_chunks(bundle.payload)
        raw_publish(broker, 3, announcement_bytes(bundle.manifest, bundle.signature, bundle.payload, chunks),
                    dict(enumerate(chunks)))  # fmt: skip
        assert done.wait(10), "the bundle was never applied"
        (went_live,) = applied
        assert went_live.version == 3 and len(went_live.gallery) == 5
        assert went_live.index.kind == "hnsw"  # the index settings the gallery went live with
        assert GalleryStore(config.gallery_dir).load().version == 3
        wait_for(lambda: sync.client.last_state.status == "applied", 5, "applied state")
        state = read_retained(broker, f"{PREFIX}/door1/gallery/state")
        assert state is not None and state["version"] == 3 and state["status"] == "applied"
    finally:
        sync.close()
