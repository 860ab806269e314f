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
    """Start mosquitto with `config` and return once it accepts connections on `port`.

    Its log goes to a file beside the config: a pipe nobody reads fills up after a few hundred connection
    lines, and mosquitto then stops serving."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        raise EdgefaceError("no local MQTT broker: install mosquitto (apt-get install mosquitto)")
    log_path = config.with_suffix(".log")
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    return wait_until_listening(process, port, timeout, "mosquitto", log_path)


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, timeout: float, what: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """Return `process` once something accepts connections on loopback `port`; raise with the tail of its
    log if it exits first, or stop it if it does not listen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                tail = (
                    log_path.read_bytes()[-2000:].decode(errors="replace").strip()
                    if log_path.exists()
                    else ""
                )
                raise EdgefaceError(f"{what} exited: {tail}") from None
            if time.monotonic() > deadline:
                process.terminate()
                raise EdgefaceError(f"{what} did not listen on port {port} within {timeout:g} s") from None
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
