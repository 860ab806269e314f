"""Ed25519 key generation and signing of gallery manifests (server side; devices only verify).

Private keys are PKCS#8 PEM (unencrypted, written 0600); public keys are SubjectPublicKeyInfo PEM, read by
`edgeface.sync.signing.load_public_key`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeface.errors import BundleError

__all__ = ["Ed25519PrivateKey", "generate_keypair", "load_private_key", "public_pem", "sign"]


def generate_keypair(private_path: Path, public_path: Path, overwrite: bool = False) -> Ed25519PublicKey:
    """Write a new Ed25519 key pair; refuses to overwrite an existing private key unless told."""
    if private_path.exists() and not overwrite:
        raise BundleError(f"{private_path}: exists already; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = key.public_key()
    public_path.write_bytes(public_pem(public))
    return public


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key (use `edgeface gallery keygen`)")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)
