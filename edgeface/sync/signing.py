"""Ed25519 verification of gallery manifests on a device (the `cryptography` package).

A signature is the raw 64-byte Ed25519 signature over the exact manifest bytes; the public key is
SubjectPublicKeyInfo PEM. Key generation and signing are server side (`edgeface.server.signing`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeface.errors import BundleError
from edgeface.util.files import MAX_KEY_BYTES, FileRefused, read_bytes
from edgeface.util.logsafe import printable

__all__ = ["SIGNATURE_BYTES", "Ed25519PublicKey", "load_public_key", "signature_valid"]

SIGNATURE_BYTES = 64


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = read_bytes(path, MAX_KEY_BYTES, "public key")
    except FileRefused as exc:
        raise BundleError(str(exc)) from None
    if b"PRIVATE KEY" in data:  # never let a private key sit where devices expect the public one
        raise BundleError(f"{path}: holds a private key; give the public key (`gallery keygen --public`)")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BundleError(f"{path}: not a PEM public key ({printable(str(exc), 200)})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key


def signature_valid(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
