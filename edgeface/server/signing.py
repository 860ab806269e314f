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
from edgeface.util.files import MAX_KEY_BYTES, FileRefused, check_output_path, read_bytes, write_atomic

__all__ = ["Ed25519PrivateKey", "generate_keypair", "load_private_key", "public_pem", "sign"]


def generate_keypair(private_path: Path, public_path: Path, overwrite: bool = False) -> Ed25519PublicKey:
    """Write a new Ed25519 key pair; refuses to overwrite an existing private key unless told, to write
    both keys to one file, or to replace anything but a regular file."""
    if _same_file(private_path, public_path):
        raise BundleError(f"--private {private_path} and --public {public_path} are the same file")
    if os.path.lexists(private_path) and not overwrite:
        raise BundleError(f"{private_path}: exists already; refusing to overwrite a signing key")
    check_output_path(private_path, "private key")
    check_output_path(public_path, "public key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(private_path, pem, "private key", mode=0o600)
    public = key.public_key()
    write_atomic(public_path, public_pem(public), "public key")
    return public


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():  # resolve follows symlinks: a link to the other key is the other key
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(
            read_bytes(path, MAX_KEY_BYTES, "private key"), password=None
        )
    except FileRefused as exc:
        raise BundleError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key (use `edgeface gallery keygen`)")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)
