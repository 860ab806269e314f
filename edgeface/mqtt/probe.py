"""One authenticated connect to the broker, as the daemon makes it, for `edgeface doctor`.

It tells apart what the daemon would meet: a broker that is down (events queue on disk), one that does not
answer, and one that answers but refuses our credentials (which no amount of waiting fixes)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgeface.errors import EdgefaceError
from edgeface.mqtt.settings import MqttSettings, read_credentials
from edgeface.mqtt.tls import tls_context
from edgeface.util.logsafe import printable

# CONNACK reasons (MQTT 3.1.1 return codes 4 and 5, their MQTT 5 equivalents) meaning "not these credentials"
AUTH_REFUSALS = frozenset({"Not authorized", "Bad user name or password", "Bad authentication method"})


def probe_broker(settings: MqttSettings, timeout: float) -> str:
    """A line saying the broker accepted us; EdgefaceError saying why not (refused, unreachable, silent)."""
    where = f"broker {address(settings.host, settings.port)}"
    client = _client(settings)
    answer: list[str] = []
    answered = threading.Event()

    def on_connect(
        client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        answer.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect_timeout = timeout
    try:
        client.connect(settings.host, settings.port, keepalive=60)
    except (OSError, ValueError) as exc:
        raise EdgefaceError(
            f"{where} unreachable ({printable(str(exc), 200)}); events will queue on disk"
        ) from None
    deadline = time.monotonic() + timeout
    try:
        while not answered.is_set() and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS and not answered.is_set():
                break  # the broker closed the connection without a CONNACK
    finally:
        client.disconnect()
    if not answer:
        raise EdgefaceError(
            f"{where}: no MQTT answer within {timeout:g} s (not a broker, or TLS/port mismatch)"
        )
    if answer[0] != "Success":
        hint = "; check mqtt.credentials_file and the broker's users" if answer[0] in AUTH_REFUSALS else ""
        raise EdgefaceError(refusal(where, answer[0]) + hint)
    who = "with our credentials" if settings.credentials_file else "anonymous"
    return f"{settings.host}:{settings.port} accepts connections ({who})"


def refusal(where: str, reason: str) -> str:
    """What a failed CONNACK means, in words: credentials refused, or another refusal."""
    if reason in AUTH_REFUSALS:
        return f"{where} refused authentication ({reason})"
    return f"{where} refused the connection ({printable(reason, 100)})"


def address(host: str, port: int) -> str:
    """`host:port`, an IPv6 host in brackets as on the command line."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client(settings: MqttSettings) -> paho.Client:
    v5 = settings.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{settings.effective_client_id}-doctor",  # never the daemon's id: that would kick it off
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else True,
    )
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
        client.tls_insecure_set(settings.tls.insecure)
    if settings.credentials_file is not None:
        credentials = read_credentials(settings.credentials_file)
        client.username_pw_set(credentials.username, credentials.password)
    return client
