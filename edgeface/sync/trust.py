"""Which keys a door trusts to sign galleries: one plain key, or any key an offline root key certifies.

A door provisioned with `sync.public_key` trusts exactly that key (as before). A door provisioned with
`sync.root_key` trusts a gallery-signing key only through a certificate the root signed, while it is valid
and not revoked, so signing keys rotate without touching the doors::

    certificate file:  {"cert": base64 of the signed body, "signature": base64 (root, 64 bytes)}
    body:              {"format": "edgeface-keycert/1", "key_id": hex32, "public_key": base64 (raw 32 bytes),
                        "not_before": RFC 3339, "not_after": RFC 3339}
    revocation list:   {"list": base64 of the signed body, "signature": base64 (root)}
    body:              {"format": "edgeface-revocations/1", "sequence": int >= 1, "issued": RFC 3339,
                        "revoked": [key_id, ...]}

`key_id` is the first 32 hex digits of the sha256 of the raw public key. Certificates travel with what they
sign (the announcement's and each chain link's `cert`, the timestamp's `cert`); the revocation list travels in
the announcement (`revocations`) and a door keeps the one with the highest `sequence` on disk, so an older list
replayed later cannot un-revoke a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization

from edgeface.errors import BundleError
from edgeface.sync.errors import Rejected
from edgeface.sync.jsonfields import time_field
from edgeface.sync.signing import Ed25519PublicKey, load_public_key, signature_valid

log = logging.getLogger(__name__)

CERT_FORMAT = "edgeface-keycert/1"
REVOCATIONS_FORMAT = "edgeface-revocations/1"
MAX_TRUST_BYTES = 256 * 1024


class Trust(Protocol):
    def verify(self, data: bytes, signature: bytes, cert: bytes | None) -> None:
        """Raise `Rejected` unless `signature` over `data` is by a key this door trusts now."""

    def offer_revocations(self, raw: bytes) -> None:
        """Adopt a root-signed revocation list if it is newer than the one held."""


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


class KeyTrust:
    """One plain gallery-signing key (`sync.public_key`); certificates and revocation lists are ignored."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self.key = key

    def verify(self, data: bytes, signature: bytes, cert: bytes | None) -> None:
        if not signature_valid(self.key, data, signature):
            raise Rejected(
                "bad_signature", "Ed25519 signature does not verify with the configured public key"
            )

    def offer_revocations(self, raw: bytes) -> None:
        return None


@dataclass(frozen=True, slots=True)
class KeyCert:
    key_id: str
    key: Ed25519PublicKey
    not_before: datetime
    not_after: datetime


def _signed(raw: bytes, body_key: str, what: str) -> tuple[bytes, bytes]:
    if len(raw) > MAX_TRUST_BYTES:
        raise Rejected("cert_invalid", f"{what} is {len(raw)} bytes, limit {MAX_TRUST_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
        return base64.b64decode(doc[body_key], validate=True), base64.b64decode(
            doc["signature"], validate=True
        )
    except (UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError, binascii.Error) as exc:
        raise Rejected("cert_invalid", f"{what} is not {{{body_key}, signature}} JSON with base64") from exc


def _body(raw: bytes, fmt: str) -> dict[str, object]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected("cert_invalid", f"{fmt} body is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise Rejected("cert_invalid", f"body format must be {fmt!r}")
    return doc


def parse_cert(raw: bytes, root: Ed25519PublicKey) -> KeyCert:
    """A certificate file checked against the root key (not yet against the clock or revocations)."""
    body, signature = _signed(raw, "cert", "certificate")
    if not signature_valid(root, body, signature):
        raise Rejected("cert_invalid", "certificate is not signed by the configured root key")
    doc = _body(body, CERT_FORMAT)
    encoded = doc.get("public_key", "")
    try:
        if not isinstance(encoded, str):
            raise TypeError(f"a JSON string is needed, got {type(encoded).__name__}")
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded, validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Rejected("cert_invalid", "certificate 'public_key' must be 32 raw bytes in base64") from exc
    if doc.get("key_id") != key_id(public):
        raise Rejected("cert_invalid", "certificate 'key_id' is not the sha256 of its key")
    return KeyCert(
        key_id(public),
        public,
        time_field(doc, "not_before", "cert_invalid"),
        time_field(doc, "not_after", "cert_invalid"),
    )


@dataclass(frozen=True, slots=True)
class Revocations:
    sequence: int
    revoked: frozenset[str]


def parse_revocations(raw: bytes, root: Ed25519PublicKey) -> Revocations:
    body, signature = _signed(raw, "list", "revocation list")
    if not signature_valid(root, body, signature):
        raise Rejected("cert_invalid", "revocation list is not signed by the configured root key")
    doc = _body(body, REVOCATIONS_FORMAT)
    sequence, revoked = doc.get("sequence"), doc.get("revoked")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or not 1 <= sequence <= 2**53 - 1:
        raise Rejected("cert_invalid", "revocation list 'sequence' must be an integer >= 1")
    if not isinstance(revoked, list) or not all(isinstance(k, str) and len(k) == 32 for k in revoked):
        raise Rejected("cert_invalid", "revocation list 'revoked' must be a list of key ids")
    return Revocations(sequence, frozenset(revoked))


class RootTrust:
    """Keys certified by the root (`sync.root_key`), minus the revoked ones; the newest revocation list is
    kept in `state_file` (written atomically) so it survives restarts."""

    def __init__(self, root: Ed25519PublicKey, state_file: Path | None = None) -> None:
        self.root, self._state_file = root, state_file
        self._lock = threading.Lock()
        self._revocations = Revocations(0, frozenset())
        if state_file is not None and state_file.is_file():
            try:
                self._revocations = parse_revocations(state_file.read_bytes()[: MAX_TRUST_BYTES + 1], root)
            except (OSError, Rejected) as exc:  # damaged: set aside, start from the next list received
                log.error(
                    "stored revocation list %s unusable (%s); waiting for the next one", state_file, exc
                )

    @property
    def revoked(self) -> frozenset[str]:
        return self._revocations.revoked

    def verify(self, data: bytes, signature: bytes, cert: bytes | None) -> None:
        if cert is None:
            raise Rejected("cert_invalid", "no signing-key certificate given (the door trusts a root key)")
        parsed = parse_cert(cert, self.root)
        if parsed.key_id in self._revocations.revoked:
            raise Rejected("key_revoked", f"signing key {parsed.key_id} is revoked by the root")
        now = datetime.now(UTC)
        if not parsed.not_before <= now < parsed.not_after:
            raise Rejected(
                "cert_invalid",
                f"certificate of key {parsed.key_id} is valid {parsed.not_before.isoformat()} to "
                f"{parsed.not_after.isoformat()}, not now (expired or not yet valid)",
            )
        if not signature_valid(parsed.key, data, signature):
            raise Rejected("bad_signature", f"signature does not verify with certified key {parsed.key_id}")

    def offer_revocations(self, raw: bytes) -> None:
        newer = parse_revocations(raw, self.root)
        with self._lock:
            if newer.sequence <= self._revocations.sequence:
                return
            self._revocations = newer
            if self._state_file is not None:
                _write_atomically(self._state_file, raw)
        log.info("revocation list %d adopted: %d keys revoked", newer.sequence, len(newer.revoked))


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        log.error("cannot store the revocation list at %s (%s); it holds until restart", path, exc)


def door_trust(public_key: Path | None, root_key: Path | None, gallery_dir: Path) -> Trust:
    """The trust a door's `[sync]` config names: a plain key, or a root (its revocation list kept beside
    the gallery store)."""
    if root_key is not None:
        state = gallery_dir.with_name(f"{gallery_dir.name}.revocations.json")
        return RootTrust(load_public_key(root_key), state)
    if public_key is None:
        raise BundleError("sync: give public_key or root_key")
    return KeyTrust(load_public_key(public_key))
