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

__all__ = ["SIGNATURE_BYTES", "Ed25519PublicKey", "load_public_key", "signature_valid"]

SIGNATURE_BYTES = 64


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable PEM public key ({exc})") from exc
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
