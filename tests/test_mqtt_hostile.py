"""Hostile input in the MQTT layer: a non-UTF-8 credentials file is one named error; broker-supplied topics
and callback errors cannot forge log lines."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgeface.errors import ConfigError
from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.settings import read_credentials
from tests.conftest import Broker
from tests.factories import STATUS_INFO, make_settings


def test_non_utf8_credentials_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "creds.txt"
    path.write_bytes(b"door1:p\xe4ssw\xf6rd\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError) as info:  # the old code let UnicodeDecodeError out
        read_credentials(path)
    message = str(info.value)
    assert str(path) in message and "UTF-8" in message and "\n" not in message
    assert "p\xe4ssw\xf6rd" not in message and "\\xe4" not in message  # the password never shows


def test_publisher_with_non_utf8_credentials_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "creds.txt"
    path.write_bytes(b"\xff\xfe\x00u\x00s\x00e\x00r")
    with pytest.raises(ConfigError, match=r"creds\.txt is not UTF-8"):
        MqttPublisher(make_settings(None, tmp_path, credentials_file=path), STATUS_INFO)


@pytest.mark.broker
def test_a_hostile_topic_and_error_stay_on_one_log_line(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(topic: str, payload: bytes) -> None:
        raise ValueError(f"bad name {payload.decode()}")

    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(10)
        publisher.subscribe("edgeface/fleet/#", failing)
        sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="hostile")
        sender.connect(broker.host, broker.port)
        sender.loop_start()
        for _ in range(100):
            if sender.is_connected():
                break
            time.sleep(0.05)
        # mosquitto refuses control characters in topics (it disconnects the sender), not bidi overrides
        hostile = "edgeface/fleet/x\u202eforced\u2028CRITICAL"
        for _ in range(50):  # until the subscription is in place and the callback ran
            sender.publish(hostile, b"eve\nERROR forged\x1b]0;pwned\x07", qos=1).wait_for_publish(5)
            time.sleep(0.2)
            if any("subscriber callback" in r.getMessage() for r in caplog.records):
                break
        sender.loop_stop()
        sender.disconnect()
    record = next(r for r in caplog.records if "subscriber callback" in r.getMessage())
    text = record.getMessage()
    assert not any(c in text for c in "\n\x1b\x07\u202e\u2028")
    assert "x\\u202eforced\\u2028CRITICAL" in text and "eve\\nERROR forged\\x1b]0;pwned\\x07" in text
    assert record.levelname == "ERROR" and record.exc_info is None
