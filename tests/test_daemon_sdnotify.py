"""sd_notify against a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeface.daemon.sdnotify import Notifier, watchdog_interval


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@edgeface-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name[1:].encode())
    sock.settimeout(2)
    try:
        yield name, sock
    finally:
        sock.close()


def _lines(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_reach_the_socket(
    listener: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    with Notifier() as notifier:
        assert notifier.enabled
        assert notifier.ready("models loaded")
        assert _lines(sock) == ["READY=1", "STATUS=models loaded"]
        assert notifier.watchdog()
        assert _lines(sock) == ["WATCHDOG=1"]
        assert notifier.status("12.5 fps")
        assert _lines(sock) == ["STATUS=12.5 fps"]
        assert notifier.stopping()
        assert _lines(sock) == ["STOPPING=1"]
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading()
        reloading, monotonic = _lines(sock)
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert reloading == "RELOADING=1"
    key, value = monotonic.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with Notifier() as notifier:
        assert not notifier.enabled
        assert notifier.ready() is False


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Notifier(str(tmp_path / "gone.sock")) as notifier:
        assert notifier.watchdog() is False
    assert "sd_notify" in caplog.text


def test_multiline_values_cannot_inject_fields(listener: tuple[str, socket.socket]) -> None:
    name, sock = listener
    with Notifier(name) as notifier:
        assert notifier.status("camera failed:\nREADY=1")
    assert _lines(sock) == ["STATUS=camera failed: READY=1"]


def test_watchdog_interval() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": me}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
