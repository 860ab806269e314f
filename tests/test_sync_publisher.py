"""Gallery sync sharing the daemon's `MqttPublisher` connection (the device wiring), on a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.mqtt.client import MqttPublisher
from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.client import GallerySyncClient
from edgeface.sync.mqtt import BrokerOptions, PublisherTransport
from edgeface.sync.settings import SyncClientSettings
from edgeface.sync.updater import IndexUpdater
from tests.conftest import Broker
from tests.factories import (
    FLEET,
    MODEL,
    PREFIX,
    STATUS_INFO,
    go_live,
    make_gallery,
    make_keys,
    make_settings,
    read_retained,
    wait_for,
)

pytestmark = pytest.mark.broker


def test_sync_over_the_daemons_publisher_survives_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    live = go_live(Gallery.empty(128, MODEL))
    updater = IndexUpdater(live)  # as the daemon wires it: the gallery goes live on the sync worker
    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(5)
        sync = GallerySyncClient(
            SyncClientSettings(DevicePolicy(FLEET, MODEL), "door1", PREFIX),
            keys.public,
            GalleryStore(tmp_path / "g"),
            updater.apply,
        )
        PublisherTransport.attach_to(publisher, sync)
        try:
            options = BrokerOptions(broker.host, broker.port)
            v1 = make_gallery(20)
            publish(
                options, PREFIX, FLEET, build_bundle(v1, fleet=FLEET, version=1, key=keys.private), wait_s=0.3
            )
            wait_for(lambda: live.current.version == 1, 5, "v1 live through the publisher")
            broker.stop()
            broker.start()  # persistence keeps the retained messages; the publisher reconnects and resubscribes
            assert publisher.wait_connected(10)
            v2 = v1.remove({v1.ids[0]}).with_version(2)
            publish(
                options, PREFIX, FLEET, build_bundle(v2, fleet=FLEET, version=2, key=keys.private), wait_s=0.3
            )
            wait_for(lambda: live.current.version == 2, 5, "v2 live after the reconnect")
            assert v1.ids[0] not in live.current.gallery.ids
            state = read_retained(broker, f"{PREFIX}/door1/gallery/state")
            assert state["status"] == "applied" and state["version"] == 2
        finally:
            sync.close()
