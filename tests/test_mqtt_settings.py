"""`MqttSettings`, the `[mqtt]` section: limits named by key, TLS pairs, the client id; credentials files
are tested in test_mqtt_tls.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgeface.errors import ConfigError
from edgeface.mqtt.settings import MqttSettings, TlsSettings


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"port": 0}, "mqtt.port"),
        ({"protocol": "3.1"}, "mqtt.protocol"),
        ({"device": "a/b"}, "mqtt.device"),
        ({"keepalive": 1}, "mqtt.keepalive"),
        ({"spool_max_events": 0}, "mqtt.spool_max_events"),
        ({"max_inflight": 0}, "mqtt.max_inflight"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "mqtt.reconnect_min_s"),
        ({"host": ""}, "mqtt.host"),
        ({"prefix": "a/#"}, "prefix"),
    ],
)
def test_settings_errors_name_the_key(overrides: dict[str, Any], key: str, tmp_path: Path) -> None:
    values: dict[str, Any] = {"device": "door1", "spool_path": tmp_path / "s.db"}
    values.update(overrides)
    with pytest.raises(ConfigError, match=re.escape(key)):
        MqttSettings(**values)


def test_settings_default_client_id() -> None:
    assert MqttSettings(device="door1").effective_client_id == "edgeface-door1"
    assert MqttSettings(device="door1", client_id="x").effective_client_id == "x"


def test_limits_are_inclusive_at_the_protocol_edges() -> None:
    assert MqttSettings(device="d", keepalive=65535, port=65535, max_inflight=1000).keepalive == 65535
    with pytest.raises(ConfigError, match=r"mqtt\.keepalive: must be in \[5, 65535\], got 65536"):
        MqttSettings(device="d", keepalive=65536)


def test_optional_spool_cap_is_checked_only_when_set() -> None:
    assert MqttSettings(device="d").spool_max_pages is None
    with pytest.raises(ConfigError, match=r"mqtt\.spool_max_pages: must be in \[8, inf\], got 7"):
        MqttSettings(device="d", spool_max_pages=7)


def test_tls_needs_certificate_and_key_together(tmp_path: Path) -> None:
    assert TlsSettings(ca_file=tmp_path / "ca.pem").cert_file is None
    with pytest.raises(ConfigError, match=r"mqtt\.tls: cert_file and key_file must be given together"):
        TlsSettings(key_file=tmp_path / "k.pem")


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        ({"host": "broker..lan"}, "mqtt.host", "empty label"),
        ({"host": ".broker.lan"}, "mqtt.host", "empty label"),
        ({"host": "b" * 64 + ".lan"}, "mqtt.host", "64 characters"),
        ({"host": ("a" * 60 + ".") * 5 + "lan"}, "mqtt.host", "at most 253"),
        ({"host": "broker\x00.lan"}, "mqtt.host", "U+0000"),
        ({"host": "broker lan"}, "mqtt.host", "spaces"),
        ({"host": "[::1]"}, "mqtt.host", "without brackets"),
        ({"client_id": "c" * 70_000}, "mqtt.client_id", "65535 bytes"),
        ({"client_id": "é" * 40_000}, "mqtt.client_id", "65535 bytes"),  # 80,000 bytes of UTF-8
        ({"client_id": "door\x00one"}, "mqtt.client_id", "U+0000"),
        ({"client_id": "door\x1bone"}, "mqtt.client_id", "U+001B"),
        ({"client_id": "\ud800"}, "mqtt.client_id", "U+D800"),
        ({"device": "d" * 65_530}, "mqtt.client_id", "set a shorter mqtt.client_id"),
    ],
)
def test_hosts_and_client_ids_the_protocol_cannot_carry_are_refused(
    overrides: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        MqttSettings(**({"device": "door1"} | overrides))
    assert str(caught.value).startswith(f"{key}:") and problem in str(caught.value)


@pytest.mark.parametrize(
    "host", ["localhost", "broker.lan", "broker.lan.", "10.0.0.2", "::1", "fe80::1", "bücher.de"]
)
def test_ordinary_hosts_are_accepted(host: str) -> None:
    assert MqttSettings(device="door1", host=host).host == host
    assert MqttSettings(device="door1", client_id="c" * 65_535).client_id  # the protocol's limit itself
