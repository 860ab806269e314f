"""The throw-away mosquitto of `edgeface demo`: listens on loopback for the block, is gone after it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgeface.demo.localbroker import free_port, local_broker, start_mosquitto
from edgeface.errors import EdgefaceError

pytestmark = pytest.mark.broker


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_broker_lives_exactly_as_long_as_the_block(tmp_path: Path) -> None:
    with local_broker(tmp_path) as port:
        assert _accepts(port)
        assert "127.0.0.1" in (tmp_path / "mosquitto.conf").read_text()
    assert not _accepts(port)


def test_a_broker_that_cannot_start_is_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("no_such_option true\n")
    with pytest.raises(EdgefaceError, match="mosquitto exited"):
        start_mosquitto(config, free_port(), timeout=5)
