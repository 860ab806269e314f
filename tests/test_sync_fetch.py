"""Payloads by URL: a real nginx (HTTPS, its own CA) serves content-addressed payloads, a real mosquitto
carries the signed announcement; truncated, oversized, wrong-hash and slow-loris payloads are refused with the
old gallery kept; a dropped transfer resumes with HTTP Range."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.demo.localweb import LocalWeb
from edgeface.identity.gallery import GalleryStore
from edgeface.server.build import build_bundle, write_payload_file
from edgeface.server.publish import publish
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.errors import Rejected
from edgeface.sync.fetch import Target, UrlFetchSettings, fetch_payload
from edgeface.sync.manifest import parse_manifest
from edgeface.sync.mqtt import BrokerOptions
from tests.factories import (
    FLEET,
    PREFIX,
    Keys,
    make_gallery,
    make_keys,
    read_retained,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _publish(broker, data: bytes) -> None:
    publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, data, None, wait_s=0.2)


def _url_bundle(keys: Keys, version: int, url_base: str, n: int = 30) -> bytes:
    return build_bundle(make_gallery(n, start=version * 100), fleet=FLEET, version=version, key=keys.private,
                        url_base=url_base)  # fmt: skip


def _state_reason(device) -> str:
    return device.sync.last_state.reason or ""


def test_url_bundle_built_by_the_cli_is_applied_through_nginx_and_mosquitto(
    broker, web: LocalWeb, tmp_path: Path, keys: Keys
) -> None:
    source = GalleryStore(tmp_path / "source")
    source.save(make_gallery(40))
    bundle = tmp_path / "v1.bundle"
    assert main(["gallery", "build", "--gallery", str(source.root), "--fleet", FLEET, "--version", "1",
                 "--key", str(keys.private_path), "--out", str(bundle), "--url-base", f"{web.base_url}/g/",
                 "--payload-dir", str(web.root / "g")]) == 0  # fmt: skip
    manifest = parse_manifest(unpack_bundle(bundle.read_bytes()).manifest)
    assert manifest.payload is not None and manifest.url == f"{web.base_url}/g/{manifest.payload.sha256}"
    assert (web.root / "g" / manifest.payload.sha256).stat().st_size == manifest.payload.size
    device = start_device(broker, tmp_path, keys, url=UrlFetchSettings(ca_file=web.ca_file))
    try:
        assert main(["gallery", "publish", "--broker", f"127.0.0.1:{broker.port}", "--fleet", FLEET,
                     "--state-wait", "0.2", str(bundle)]) == 0  # fmt: skip
        wait_for(lambda: device.sync.running_version == 1, 10, "v1 applied by URL")
        assert device.store.load().ids == make_gallery(40).ids
        announcement = read_retained(broker, f"{PREFIX}/fleet/{FLEET}/gallery")
        assert announcement is not None and "chunks" not in announcement["payload"]
        assert announcement["payload"]["url"] == manifest.url
        assert web.bytes_served() == manifest.payload.size  # fetched once, whole, from nginx
    finally:
        device.close()


def _truncate(data: bytes) -> bytes:
    return data[:-100]


def _extend(data: bytes) -> bytes:
    return data + b"\0" * 100


def _flip(data: bytes) -> bytes:
    return data[:50] + bytes([data[50] ^ 1]) + data[51:]


@pytest.mark.parametrize(
    ("damage", "code"),
    [(_truncate, "payload_truncated"), (_extend, "oversized"), (_flip, "payload_sha256")],
    ids=["truncated", "oversized", "wrong-hash"],
)
def test_a_damaged_payload_is_refused_and_the_old_gallery_kept(
    broker, web: LocalWeb, tmp_path: Path, keys: Keys, damage: Callable[[bytes], bytes], code: str
) -> None:
    fast = UrlFetchSettings(ca_file=web.ca_file, retries=1, backoff_s=0.05)
    device = start_device(broker, tmp_path, keys, url=fast)
    try:
        v1 = _url_bundle(keys, 1, web.base_url)
        write_payload_file(v1, web.root)
        _publish(broker, v1)
        wait_for(lambda: device.sync.running_version == 1, 10, "v1 applied")
        v2 = _url_bundle(keys, 2, web.base_url)
        served = write_payload_file(v2, web.root)
        served.write_bytes(damage(served.read_bytes()))
        _publish(broker, v2)
        wait_for(lambda: _state_reason(device).startswith(code), 10, f"{code} rejection")
        assert device.sync.running_version == 1
        assert device.store.load().version == 1 and device.index.gallery.version == 1
        assert device.sync.last_state.status == "rejected" and device.sync.last_state.version == 2
    finally:
        device.close()


class _Trickler:
    """A hostile HTTP server: sends headers promising `size` bytes, then one byte every `every_s`."""

    def __init__(self, size: int, every_s: float, headers_first: bool = True) -> None:
        self.size, self.every_s, self.headers_first = size, every_s, headers_first
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\n\r\n".encode()
        try:
            conn.recv(4096)
            if self.headers_first:
                conn.sendall(head)
                head = b""
            for byte in head + b"x" * self.size:
                if self.stop.wait(self.every_s):
                    break
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator[Callable[..., _Trickler]]:
    made: list[_Trickler] = []

    def make(size: int, every_s: float = 0.02, headers_first: bool = True) -> _Trickler:
        made.append(_Trickler(size, every_s, headers_first))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.mark.parametrize("headers_first", [True, False], ids=["slow-body", "slow-headers"])
def test_a_slow_loris_server_is_refused_by_the_stall_limit_and_the_old_gallery_kept(
    broker, web: LocalWeb, tmp_path: Path, keys: Keys, trickler, headers_first: bool
) -> None:
    stall = UrlFetchSettings(ca_file=web.ca_file, allow_http=True, stall_s=0.5, min_bytes_per_s=2000,
                             retries=1, backoff_s=0.05)  # fmt: skip
    device = start_device(broker, tmp_path, keys, url=stall)
    try:
        v1 = _url_bundle(keys, 1, web.base_url)
        write_payload_file(v1, web.root)
        _publish(broker, v1)
        wait_for(lambda: device.sync.running_version == 1, 10, "v1 applied")
        probe = unpack_bundle(_url_bundle(keys, 2, "http://127.0.0.1:1"))
        server = trickler(len(probe.payload), headers_first=headers_first)
        _publish(broker, _url_bundle(keys, 2, f"http://127.0.0.1:{server.port}"))
        wait_for(lambda: _state_reason(device).startswith("fetch_stalled"), 10, "stall rejection")
        assert server.connections == 2  # the first attempt and one retry, each cut off
        assert device.sync.running_version == 1 and device.store.load().version == 1
    finally:
        device.close()


class _Dropper:
    """Serves `data` but cuts the first connection after half of it; honours `Range: bytes=N-` after."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for attempt in range(2):
            conn, _ = self.listener.accept()
            request = conn.recv(4096).decode()
            wanted = [line for line in request.split("\r\n") if line.lower().startswith("range:")]
            if attempt == 0:
                half = len(self.data) // 2
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.data)}\r\n\r\n".encode())
                conn.sendall(self.data[:half])
            else:
                self.ranges += wanted
                start = int(wanted[0].split("=")[1].rstrip("-"))
                size = len(self.data)
                conn.sendall(f"HTTP/1.1 206 Partial Content\r\nContent-Length: {size - start}\r\n"
                             f"Content-Range: bytes {start}-{size - 1}/{size}\r\n\r\n".encode())  # fmt: skip
                conn.sendall(self.data[start:])
            conn.close()


def test_a_dropped_transfer_resumes_with_range_and_verifies(tmp_path: Path) -> None:
    import hashlib

    data = bytes(range(256)) * 400
    server = _Dropper(data)
    target = Target(f"http://127.0.0.1:{server.port}/x", len(data), hashlib.sha256(data).hexdigest())
    settings = UrlFetchSettings(allow_http=True, retries=2, backoff_s=0.05)
    assert bytes(fetch_payload(target, settings, threading.Event())) == data
    assert server.ranges == [f"Range: bytes={len(data) // 2}-"]


def test_tls_is_verified_and_plain_http_refused_unless_allowed(web: LocalWeb) -> None:
    (web.root / "f").write_bytes(b"abc")
    import hashlib

    target = Target(f"{web.base_url}/f", 3, hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(Rejected) as caught:  # the test CA is not among the system CAs
        fetch_payload(target, UrlFetchSettings(retries=0), threading.Event())
    assert caught.value.code == "fetch_failed" and "TLS" in caught.value.reason
    assert fetch_payload(target, UrlFetchSettings(ca_file=web.ca_file), threading.Event()) == b"abc"
    plain = Target(target.url.replace("https://", "http://"), 3, target.sha256)
    with pytest.raises(Rejected, match="only https"):
        fetch_payload(plain, UrlFetchSettings(), threading.Event())


def test_a_manifest_url_must_be_content_addressed(keys: Keys) -> None:
    import json

    from edgeface.sync.manifest import manifest_bytes

    parts = unpack_bundle(_url_bundle(keys, 1, "https://cdn.example/g"))
    doc = json.loads(parts.manifest)
    doc["url"] = "https://cdn.example/g/other"
    with pytest.raises(Rejected, match="content-addressed"):
        parse_manifest(manifest_bytes(doc))
    time.sleep(0)
