"""Server side: publish a bundle as a retained announcement plus retained chunks, then clear the old chunks.

Order: chunks first (QoS 1, acknowledged), then the announcement, then empty retained payloads on the
previous version's chunk topics, so a device that sees an announcement always finds its chunks.
A delta is published only when every device of the fleet that reported a retained `gallery/state` runs its
base version; otherwise the full fallback bundle is published (or publishing fails when none is given).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edgeface.errors import BundleError
from edgeface.mqtt.probe import address, refusal
from edgeface.mqtt.topics import GALLERY_STATE, check_prefix, every_device, fleet_gallery, fleet_gallery_chunk
from edgeface.sync.bundle import Bundle, check_binding, unpack_bundle
from edgeface.sync.chunks import MAX_MQTT_CHUNKS, announcement_bytes, split_chunks
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import Manifest, parse_manifest
from edgeface.sync.mqtt import BrokerOptions, make_client
from edgeface.sync.validate import valid_fleet
from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Published:
    version: int
    chunks: int
    cleared: int
    delta: bool


class _Retained:
    """Collects retained messages on some topics for a short while."""

    def __init__(self, client: mqtt.Client, topics: list[str]) -> None:
        self.messages: dict[str, bytes] = {}
        self._lock = threading.Lock()
        for topic in topics:
            client.message_callback_add(topic, self._on_message)
            client.subscribe(topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            with self._lock:
                self.messages[message.topic] = bytes(message.payload)


def _connect(options: BrokerOptions) -> mqtt.Client:
    client = make_client(options)
    where = f"broker {address(options.host, options.port)}"
    refused: list[str] = []

    def on_connect(
        c: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        if reason.is_failure:
            refused.append(str(reason))

    client.on_connect = on_connect
    try:
        client.connect(options.host, options.port, keepalive=options.keepalive)
    except (OSError, ValueError) as exc:  # refused, unreachable, unknown host, TLS handshake
        raise BundleError(f"{where}: cannot connect ({exc})") from exc
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if refused or time.monotonic() > deadline:
            client.loop_stop()
            raise BundleError(
                refusal(where, refused[0]) if refused else f"{where}: not connected within 10 s"
            )
        time.sleep(0.02)
    return client


def _previous_chunks(raw: bytes | None) -> tuple[int, int] | None:
    try:
        doc = json.loads(raw or b"")
        manifest = parse_manifest(base64.b64decode(doc["manifest"]))
        return manifest.version, len(doc["payload"]["chunks"])
    except Exception:  # anything unreadable has no chunks we could name
        return None


def delta_allowed(manifest: Manifest, states: dict[str, bytes], fleet: str) -> bool:
    """True when at least one device of `fleet` reported, and every one runs the delta's base version."""
    running = []
    for topic, raw in states.items():
        try:
            state = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # one device's garbage never stops a fleet publish
            log.warning(
                "skipping %s: its retained state is not JSON (%s)", printable(topic, 120), printable(exc, 120)
            )
            continue
        if isinstance(state, dict) and state.get("fleet") == fleet:
            running.append(state.get("running"))
    return bool(running) and all(r == manifest.base_version for r in running)


def _chunks(manifest: Manifest, payload: bytes | memoryview) -> list[bytes]:
    """The payload cut exactly as its signed manifest says (devices refuse any other chunk table)."""
    if manifest.payload is None:
        raise BundleError(
            f"bundle v{manifest.version} has no signed chunk table (built by an older `gallery build`); "
            "devices refuse it over MQTT: rebuild it"
        )
    try:
        check_binding(manifest, payload)
    except Rejected as exc:
        raise BundleError(f"bundle v{manifest.version}: {exc.reason}") from exc
    if manifest.url is not None:
        return []
    count = len(manifest.payload.chunk_sizes())
    if count > MAX_MQTT_CHUNKS:
        raise BundleError(
            f"bundle v{manifest.version} is {count} MQTT chunks, more than the {MAX_MQTT_CHUNKS} a broker "
            "queues per client: build it with --url-base and serve the payload over HTTP(S)"
        )
    return split_chunks(payload, manifest.payload.chunk_bytes)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chain_link(manifest: bytes, signature: bytes, cert: bytes | None) -> dict[str, str]:
    link = {"manifest": _b64(manifest), "signature": _b64(signature)}
    return link | ({"cert": _b64(cert)} if cert is not None else {})


def catch_up_chain(
    previous: bytes | None, delta: Bundle, keep: int, cert: bytes | None = None
) -> list[dict[str, str]]:
    """The retained announcement's chain of deltas with `delta` appended, the newest `keep` kept; a chain
    that does not lead to `delta`'s base starts over with `delta` alone."""
    manifest = parse_manifest(delta.manifest)
    links: list[dict[str, str]] = []
    try:
        doc = json.loads(previous or b"")
        links = [link for link in doc.get("chain", []) if isinstance(link, dict)]
        last = parse_manifest(base64.b64decode(links[-1]["manifest"])) if links else None
        if last is None or last.version != manifest.base_version:
            links = []
    except Exception:  # an unreadable previous announcement has no chain to extend
        links = []
    return ([*links, _chain_link(delta.manifest, delta.signature, cert)])[-keep:]


def _url_with_chain(delta: Bundle, full: Bundle | None) -> bool:
    """A URL delta published with its URL full bundle: announce the full one with the catch-up chain."""
    if full is None:
        return False
    d, f = parse_manifest(delta.manifest), parse_manifest(full.manifest)
    if not (d.is_delta and d.url is not None):
        return False
    if f.is_delta or f.url is None or f.version != d.version or f.fleet != d.fleet:
        raise BundleError(
            f"--full must be the URL full bundle of version {d.version} (got {'a delta' if f.is_delta else f'v{f.version}'})"
        )
    return True


def publish(
    options: BrokerOptions,
    prefix: str,
    fleet: str,
    bundle: bytes,
    fallback: bytes | None = None,
    wait_s: float = 1.0,
    keep_chain: int = 8,
    cert: bytes | None = None,
    revocations: bytes | None = None,
) -> Published:
    """Publish `bundle` (chunks, or by URL). A URL delta with its URL full `fallback` is announced as the
    full bundle plus the chain of the last `keep_chain` deltas (doors catch up by deltas where they can).
    `cert` (the signing key's certificate) and `revocations` (the root's list) travel in the announcement."""
    try:
        valid_fleet(fleet)
        check_prefix(prefix)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    client = _connect(options)
    try:
        topic = fleet_gallery(prefix, fleet)
        seen = _Retained(client, [topic, every_device(prefix, GALLERY_STATE)])
        time.sleep(wait_s)
        parts = unpack_bundle(bundle)
        manifest = parse_manifest(parts.manifest)
        extra: dict[str, object] = {}
        if cert is not None:
            extra["cert"] = _b64(cert)
        if revocations is not None:
            extra["revocations"] = _b64(revocations)
        if _url_with_chain(parts, unpack_bundle(fallback) if fallback is not None else None):
            assert fallback is not None
            extra["chain"] = catch_up_chain(seen.messages.get(topic), parts, keep_chain, cert)
            parts = unpack_bundle(fallback)
            manifest = parse_manifest(parts.manifest)
        elif manifest.is_delta and not delta_allowed(manifest, dict(seen.messages), fleet):
            if fallback is None:
                raise BundleError(
                    f"not every device of fleet {fleet!r} reports version {manifest.base_version}; "
                    "give a full bundle to fall back to"
                )
            log.info("devices are not all on %d: publishing the full bundle", manifest.base_version)
            parts = unpack_bundle(fallback)
            manifest = parse_manifest(parts.manifest)
        if manifest.fleet != fleet:
            raise BundleError(f"bundle is for fleet {printable(manifest.fleet, 80)!r}, not {fleet!r}")
        previous = _previous_chunks(seen.messages.get(topic))
        chunks = _chunks(manifest, parts.payload)
        infos = [
            client.publish(fleet_gallery_chunk(prefix, fleet, manifest.version, n), c, qos=1, retain=True)
            for n, c in enumerate(chunks)
        ]
        announcement = announcement_bytes(
            parts.manifest, parts.signature, parts.payload, chunks, manifest.url, extra
        )
        infos.append(client.publish(topic, announcement, qos=1, retain=True))
        cleared = 0
        if previous is not None and previous[0] != manifest.version:
            infos += [
                client.publish(fleet_gallery_chunk(prefix, fleet, previous[0], n), b"", qos=1, retain=True)
                for n in range(previous[1])
            ]
            cleared = previous[1]
        for info in infos:
            info.wait_for_publish(timeout=60)
        return Published(manifest.version, len(chunks), cleared, manifest.is_delta)
    finally:
        client.disconnect()
        client.loop_stop()
