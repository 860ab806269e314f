"""Bindings of `GallerySyncClient` to MQTT connections.

`PublisherTransport.attach_to(publisher, sync)` shares the daemon's `MqttPublisher` connection (preferred on a
device); `PahoTransport.attach_to(client, sync)` wires any paho 2.x client; `make_client(BrokerOptions)` makes
one (TLS and username/password optional) for tools and tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgeface.mqtt.settings import TlsSettings
from edgeface.mqtt.tls import tls_context
from edgeface.sync.client import GallerySyncClient

if TYPE_CHECKING:
    from edgeface.mqtt.client import MqttPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str
    port: int = 1883
    client_id: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive: int = 30


def make_client(options: BrokerOptions) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=options.client_id, protocol=mqtt.MQTTv311)
    if options.tls_ca is not None:
        settings = TlsSettings(options.tls_ca, options.tls_cert, options.tls_key)
        client.tls_set_context(tls_context(settings, ("--tls-ca", "--tls-cert/--tls-key")))
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    client.max_queued_messages_set(0)
    return client


class PahoTransport:
    """`Transport` over a paho client; QoS 1 for everything gallery sync sends and receives."""

    def __init__(self, client: mqtt.Client, state_topic: str) -> None:
        self.client = client
        self.state_topic = state_topic

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        self.client.unsubscribe(topic)

    def publish_state(self, state: Mapping[str, Any]) -> None:
        self.client.publish(self.state_topic, json.dumps(state).encode(), qos=1, retain=True)

    def connected(self) -> bool:
        return self.client.is_connected()

    @classmethod
    def attach_to(cls, client: mqtt.Client, sync: GallerySyncClient) -> PahoTransport:
        """Route `client`'s connect and gallery messages to `sync` (keeps other callbacks working)."""
        transport = cls(client, sync.config.state_topic)
        sync.attach(transport)
        # Clients here use CallbackAPIVersion.VERSION2 (see make_client), so a previous on_connect has its signature.
        previous_connect = cast("mqtt.CallbackOnConnect_v2 | None", client.on_connect)

        def on_connect(
            c: mqtt.Client,
            userdata: object,
            flags: mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if previous_connect is not None:
                previous_connect(c, userdata, flags, reason_code, properties)
            if not reason_code.is_failure:
                sync.on_connect()
            else:
                log.warning("broker refused the connection: %s", reason_code)

        client.on_connect = on_connect
        client.message_callback_add(
            sync.config.gallery_topic, lambda c, u, m: sync.on_message(m.topic, bytes(m.payload))
        )
        for topic in (sync.config.chunk_filter(), sync.config.timestamp_topic):
            client.message_callback_add(topic, lambda c, u, m: sync.on_message(m.topic, bytes(m.payload)))
        return transport


class PublisherTransport:
    """`Transport` over the daemon's `edgeface.mqtt.client.MqttPublisher`, so sync shares its one connection.

    The publisher re-subscribes and re-publishes the retained gallery state after every reconnect itself.
    """

    def __init__(self, publisher: MqttPublisher, sync: GallerySyncClient) -> None:
        self.publisher = publisher
        self.sync = sync

    def subscribe(self, topic: str) -> None:
        self.publisher.subscribe(topic, self.sync.on_message, qos=1)

    def unsubscribe(self, topic: str) -> None:
        self.publisher.unsubscribe(topic)

    def publish_state(self, state: Mapping[str, Any]) -> None:
        self.publisher.publish_gallery_state(state)

    def connected(self) -> bool:
        return self.publisher.connected

    @classmethod
    def attach_to(cls, publisher: MqttPublisher, sync: GallerySyncClient) -> PublisherTransport:
        transport = cls(publisher, sync)
        sync.attach(transport)
        sync.on_connect()  # subscriptions and state persist across the publisher's reconnects
        return transport
