"""Shared fixtures: the real face photos and a real mosquitto broker on a free loopback port."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeface.demo.localbroker import free_port, start_mosquitto
from edgeface.demo.localweb import LocalWeb, start_nginx

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FACES5 = Path(os.environ.get("EDGEFACE_FACES", ROOT.parent / "shared" / "data" / "faces5"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the `broker` fixture is a `broker` test, marked or not, so `-m "not broker"` (the
    inner loop, `make check`) never starts a mosquitto."""
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def faces5() -> Path:
    """The shared real photos; missing data is a failure, never a skip (docs/design.md §9)."""
    if not FACES5.is_dir():
        pytest.fail(f"test photos not found at {FACES5} (set EDGEFACE_FACES)")
    return FACES5


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS / "face_detection_full_range.tflite").is_file():
        pytest.fail("detector models missing: run `python models/recipe.py detectors`")
    return MODELS


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes] | None
    config: Path

    def start(self) -> None:
        self.process = start_mosquitto(self.config, self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def make_broker(directory: Path, extra_config: str = "", *, anonymous: bool = True) -> Broker:
    port = free_port()
    config = directory / "mosquitto.conf"
    # As root, mosquitto drops to the `mosquitto` user and then cannot write its persistence file into
    # the test's temp dir, forgetting subscriber sessions across a restart.
    run_as = "user root\n" if os.geteuid() == 0 and "\nuser " not in f"\n{extra_config}" else ""
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\npersistence true\n"
        f"persistence_location {directory}/\n{run_as}{extra_config}"
    )
    return Broker("127.0.0.1", port, None, config)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, stopped after the test."""
    instance = make_broker(tmp_path)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@dataclass
class PasswordBroker:
    broker: Broker
    username: str
    password: str


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[PasswordBroker]:
    """A real mosquitto that admits only `username`/`password` (a password file, `allow_anonymous false`)."""
    passwords = tmp_path / "mosquitto.passwd"
    username, password = "door1", "s3cret-door"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), username, password], check=True)
    instance = make_broker(tmp_path, f"password_file {passwords}\n", anonymous=False)
    instance.start()
    try:
        yield PasswordBroker(instance, username, password)
    finally:
        instance.stop()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[LocalWeb]:
    """A real nginx serving `tmp_path/www` over HTTPS on a free loopback port (its CA in `ca_file`), with its
    config, pid, logs and temp files in `tmp_path/nginx`; stopped after the test."""
    from tests.factories import make_pki  # factories imports this module

    (tmp_path / "pki").mkdir()
    (tmp_path / "www").mkdir()
    pki = make_pki(tmp_path / "pki")
    server = start_nginx(tmp_path / "www", tmp_path / "nginx", tls=(pki["server_cert"], pki["server_key"]))
    server.ca_file = pki["ca"]
    try:
        yield server
    finally:
        server.stop()
