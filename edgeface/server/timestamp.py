"""Server side of freshness: sign and retain a short-lived timestamp naming the fleet's newest gallery.

Run it more often than the lifetime (e.g. every 5 minutes for a 15 minute lifetime, from a systemd timer or
cron); doors that stop receiving it report their gallery as stale (`edgeface.sync.timestamp`).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

from edgeface.errors import BundleError
from edgeface.identity.gallery import sha256_bytes
from edgeface.mqtt.topics import fleet_gallery, fleet_timestamp
from edgeface.server.publish import _connect, _Retained
from edgeface.server.signing import Ed25519PrivateKey, sign
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import parse_manifest
from edgeface.sync.mqtt import BrokerOptions
from edgeface.sync.timestamp import (
    MAX_TIMESTAMP_DAYS,
    TimestampRecord,
    parse_timestamp_record,
    timestamp_message_bytes,
    timestamp_record_bytes,
)


def newest_manifest(raw: bytes | None, fleet: str) -> bytes:
    """The signed manifest bytes of the retained announcement (what the timestamp vouches for)."""
    if not raw:
        raise BundleError(f"fleet {fleet!r} has no retained gallery announcement: publish a bundle first")
    try:
        manifest = base64.b64decode(json.loads(raw)["manifest"], validate=True)
        parse_manifest(manifest)
    except (ValueError, KeyError, TypeError, Rejected) as exc:
        raise BundleError(f"the retained announcement of fleet {fleet!r} is unreadable ({exc})") from exc
    return manifest


def sign_timestamp(
    manifest: bytes, key: Ed25519PrivateKey, lifetime: timedelta, now: datetime | None = None
) -> tuple[bytes, bytes, TimestampRecord]:
    if not timedelta(0) < lifetime <= timedelta(days=MAX_TIMESTAMP_DAYS):
        raise BundleError(f"--minutes: the lifetime must be > 0 and at most {MAX_TIMESTAMP_DAYS} days")
    parsed = parse_manifest(manifest)
    record = timestamp_record_bytes(
        parsed.fleet, parsed.version, sha256_bytes(manifest), now or datetime.now(UTC), lifetime
    )
    return record, sign(key, record), parse_timestamp_record(record)


def publish_timestamp(
    options: BrokerOptions,
    prefix: str,
    fleet: str,
    key: Ed25519PrivateKey,
    lifetime: timedelta,
    cert: bytes | None = None,
    wait_s: float = 1.0,
) -> TimestampRecord:
    client = _connect(options)
    try:
        topic = fleet_gallery(prefix, fleet)
        seen = _Retained(client, [topic])
        time.sleep(wait_s)
        record, signature, parsed = sign_timestamp(
            newest_manifest(seen.messages.get(topic), fleet), key, lifetime
        )
        message = timestamp_message_bytes(record, signature, cert)
        client.publish(fleet_timestamp(prefix, fleet), message, qos=1, retain=True).wait_for_publish(30)
        return parsed
    finally:
        client.disconnect()
        client.loop_stop()
