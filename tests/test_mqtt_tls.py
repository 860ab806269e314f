"""TLS with client certificates and username/password from a file, against a real mosquitto."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeface.errors import ConfigError
from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.settings import TlsSettings, read_credentials
from tests.conftest import Broker, make_broker
from tests.event_schema import validate
from tests.factories import make_pki
from tests.test_mqtt_client import STATUS, Collector, has_ids, make_event, make_settings

pytestmark = pytest.mark.broker


def _run_broker(directory: Path, extra: str) -> Iterator[Broker]:
    user = "user root\n" if os.geteuid() == 0 else ""
    broker = make_broker(directory, extra + user)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]) -> Iterator[Broker]:
    extra = (
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\ntls_version tlsv1.2\n"
    )
    yield from _run_broker(tmp_path, extra)


def test_mutual_tls_delivers_events(tls_broker: Broker, pki: dict[str, Path], tmp_path: Path) -> None:
    tls = TlsSettings(ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"])
    collector = Collector(
        tls_broker,
        ["edgeface/door1/events"],
        ca_certs=str(pki["ca"]),
        certfile=str(pki["client_cert"]),
        keyfile=str(pki["client_key"]),
    )
    try:
        with MqttPublisher(make_settings(tls_broker, tmp_path, tls=tls), STATUS) as publisher:
            assert publisher.wait_connected(5)
            event = make_event(1)
            publisher.publish_event(event)
            assert collector.wait(has_ids("edgeface/door1/events", {event.event_id}))
        validate("event", json.loads(collector.messages[0].payload))
    finally:
        collector.close()


def test_tls_without_client_certificate_is_refused(
    tls_broker: Broker, pki: dict[str, Path], tmp_path: Path
) -> None:
    settings = make_settings(tls_broker, tmp_path, tls=TlsSettings(ca_file=pki["ca"]))
    with MqttPublisher(settings, STATUS) as publisher:
        assert not publisher.wait_connected(2)
        publisher.publish_event(make_event(1))
        assert publisher.stats().pending == 1  # kept for when the configuration is fixed
        publisher.close(flush_timeout=0.1)


def test_tls_with_a_foreign_ca_is_refused(tls_broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    tls = TlsSettings(ca_file=other["ca"], cert_file=other["client_cert"], key_file=other["client_key"])
    with MqttPublisher(make_settings(tls_broker, tmp_path, tls=tls), STATUS) as publisher:
        assert not publisher.wait_connected(2)


def test_missing_tls_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file"):
        MqttPublisher(make_settings(None, tmp_path, tls=TlsSettings(ca_file=tmp_path / "nope.pem")), STATUS)
    with pytest.raises(ConfigError, match="together"):
        TlsSettings(cert_file=tmp_path / "c.pem")


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd not found: install the mosquitto package")
    passwords = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(passwords), "door1", "s3cret:with colon"], check=True)
    passwords.chmod(0o644)
    yield from _run_broker(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n")


@pytest.mark.parametrize("layout", ["one_line", "two_lines"])
def test_credentials_file_logs_in(password_broker: Broker, tmp_path: Path, layout: str) -> None:
    creds = tmp_path / "mqtt.credentials"
    text = "door1:s3cret:with colon\n" if layout == "one_line" else "door1\ns3cret:with colon\n"
    creds.write_text(text)
    creds.chmod(0o600)
    with MqttPublisher(make_settings(password_broker, tmp_path, credentials_file=creds), STATUS) as publisher:
        assert publisher.wait_connected(5)


def test_wrong_password_is_refused_and_never_logged(
    password_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    creds = tmp_path / "mqtt.credentials"
    creds.write_text("door1:wrong-password-123\n")
    with MqttPublisher(make_settings(password_broker, tmp_path, credentials_file=creds), STATUS) as publisher:
        assert not publisher.wait_connected(2)
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert "wrong-password-123" not in caplog.text
    assert "wrong-password-123" not in repr(read_credentials(creds))


@pytest.mark.parametrize("text", ["", "just-a-user\n", "a\nb\nc\n", ":nouser\n"])
def test_malformed_credentials_file(tmp_path: Path, text: str) -> None:
    creds = tmp_path / "mqtt.credentials"
    creds.write_text(text)
    with pytest.raises(ConfigError, match=r"mqtt\.credentials_file") as info:
        read_credentials(creds)
    assert "nouser" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_credentials(tmp_path / "missing")
