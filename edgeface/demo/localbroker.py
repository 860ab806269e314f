"""A mosquitto on a free loopback port, for `edgeface demo`, the benchmarks and the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeface.errors import EdgefaceError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mosquitto(config: Path, port: int, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start mosquitto with `config` and return once it accepts connections on `port`."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        raise EdgefaceError("no local MQTT broker: install mosquitto (apt-get install mosquitto)")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr is not None else ""
                raise EdgefaceError(f"mosquitto exited: {stderr}") from None
            if time.monotonic() > deadline:
                process.terminate()
                raise EdgefaceError(f"mosquitto did not listen on port {port} within {timeout:g} s") from None
            time.sleep(0.05)


@contextmanager
def local_broker(workdir: Path) -> Iterator[int]:
    """An anonymous, loopback-only mosquitto for the lifetime of the block; yields its port."""
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = start_mosquitto(config, port)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
