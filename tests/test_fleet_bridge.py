"""Two real mosquitto brokers bridged with the shipped systemd/mosquitto-bridge.conf (mutual TLS to the
central one): a bundle published on the central broker reaches a door connected to the site broker and is
applied, and the door's retained gallery state reaches the central broker."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.sync.mqtt import BrokerOptions
from tests.conftest import Broker, make_broker
from tests.factories import FLEET, PREFIX, make_gallery, make_keys, make_pki, start_device, wait_for

pytestmark = pytest.mark.broker

SHIPPED = Path(__file__).resolve().parents[1] / "systemd" / "mosquitto-bridge.conf"


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Broker, Broker, dict[str, Path]]]:
    pki = make_pki(tmp_path)
    (tmp_path / "central").mkdir()
    (tmp_path / "site").mkdir()
    central = make_broker(tmp_path / "central", f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\n"
                          f"keyfile {pki['server_key']}\nrequire_certificate true\n")  # fmt: skip
    bridge = (
        SHIPPED.read_text()
        .replace("central.example.com:8883", f"127.0.0.1:{central.port}")
        .replace("/etc/mosquitto/certs/ca.pem", str(pki["ca"]))
        .replace("/etc/mosquitto/certs/site.pem", str(pki["client_cert"]))
        .replace("/etc/mosquitto/certs/site.key", str(pki["client_key"]))
    )
    site = make_broker(tmp_path / "site", bridge)
    central.start()
    site.start()
    try:
        yield central, site, pki
    finally:
        site.stop()
        central.stop()


def _central_options(central: Broker, pki: dict[str, Path]) -> BrokerOptions:
    return BrokerOptions(central.host, central.port, "", pki["ca"], pki["client_cert"], pki["client_key"])


def _read_central(central: Broker, pki: dict[str, Path], topic: str) -> dict:
    got: dict[str, bytes] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="central-reader")
    client.tls_set(
        str(pki["ca"]), str(pki["client_cert"]), str(pki["client_key"]), tls_version=ssl.PROTOCOL_TLS_CLIENT
    )
    client.on_message = lambda c, u, m: got.__setitem__("payload", bytes(m.payload))
    client.connect(central.host, central.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        wait_for(lambda: "payload" in got and json.loads(got["payload"]).get("running") == 1, 10, topic)
    finally:
        client.disconnect()
        client.loop_stop()
    return json.loads(got["payload"])


def test_a_bundle_published_centrally_reaches_a_door_on_the_site_broker(brokers, tmp_path: Path) -> None:
    central, site, pki = brokers
    keys = make_keys(tmp_path / "keys")
    door = start_device(site, tmp_path, keys, name="site-door")
    try:
        gallery = make_gallery(300)  # several chunks
        bundle = build_bundle(gallery, fleet=FLEET, version=1, key=keys.private, chunk_bytes=16 * 1024)
        done = publish(_central_options(central, pki), PREFIX, FLEET, bundle, None, wait_s=0.2)
        assert done.chunks > 5
        wait_for(lambda: door.sync.running_version == 1, 20, "v1 through the bridge")
        assert door.store.load().ids == gallery.ids
        state = _read_central(central, pki, f"{PREFIX}/site-door/gallery/state")
        assert state["status"] == "applied" and state["fleet"] == FLEET
    finally:
        door.close()
