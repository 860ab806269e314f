"""The offline root's two jobs: certify gallery-signing keys and revoke them (formats in `edgeface.sync.trust`).

The root private key stays offline (an air-gapped machine or a hardware token); only certificates and
revocation lists, which are public, travel to the fleet server.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization

from edgeface.errors import BundleError
from edgeface.server.signing import Ed25519PrivateKey, sign
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import manifest_bytes
from edgeface.sync.signing import Ed25519PublicKey
from edgeface.sync.trust import CERT_FORMAT, REVOCATIONS_FORMAT, key_id, parse_cert, parse_revocations
from edgeface.util.timestamps import rfc3339

MAX_CERT_DAYS = 10 * 366


def _envelope(body_key: str, body: bytes, root: Ed25519PrivateKey) -> bytes:
    doc = {
        body_key: base64.b64encode(body).decode(),
        "signature": base64.b64encode(sign(root, body)).decode(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def certify(
    root: Ed25519PrivateKey, key: Ed25519PublicKey, days: float, not_before: datetime | None = None
) -> bytes:
    """A certificate (file bytes) for `key`, valid from `not_before` (default now) for `days`."""
    if not 0 < days <= MAX_CERT_DAYS:
        raise BundleError(f"--days: must be > 0 and at most {MAX_CERT_DAYS}, got {days:g}")
    start = not_before or datetime.now(UTC)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = manifest_bytes(
        {
            "format": CERT_FORMAT,
            "key_id": key_id(key),
            "public_key": base64.b64encode(raw).decode(),
            "not_before": rfc3339(start),
            "not_after": rfc3339(start + timedelta(days=days)),
        }
    )
    data = _envelope("cert", body, root)
    parse_cert(data, root.public_key())  # the device's own parser
    return data


def revoke(root: Ed25519PrivateKey, key_ids: list[str], previous: bytes | None = None) -> bytes:
    """A revocation list (file bytes): `previous` plus `key_ids`, with the next sequence number."""
    try:
        held = parse_revocations(previous, root.public_key()) if previous is not None else None
    except Rejected as exc:
        raise BundleError(f"--previous: {exc.reason}") from exc
    bad = [k for k in key_ids if len(k) != 32 or any(c not in "0123456789abcdef" for c in k)]
    if bad:
        raise BundleError(
            f"--key-id: {bad[0]!r} is not a 32-digit lowercase hex key id (see `gallery certify`)"
        )
    revoked = sorted(set(key_ids) | (held.revoked if held else set()))
    body = manifest_bytes(
        {
            "format": REVOCATIONS_FORMAT,
            "sequence": (held.sequence if held else 0) + 1,
            "issued": rfc3339(),
            "revoked": revoked,
        }
    )
    return _envelope("list", body, root)
