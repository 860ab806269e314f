"""Server side: make and sign full or delta bundles from a `Gallery`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgeface.errors import BundleError
from edgeface.identity.gallery import (
    Gallery,
    GalleryStore,
    content_fields,
    npy_bytes,
    read_gallery_dir,
    sha256_bytes,
)
from edgeface.server.delta import compute_delta
from edgeface.server.signing import Ed25519PrivateKey, sign
from edgeface.sync.bundle import (
    Bundle,
    bind_payload,
    pack_bundle,
    pack_payload,
    read_bundle,
    rows_gallery,
    unpack_bundle,
    verify_bundle,
)
from edgeface.sync.delta import apply_delta
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import FORMAT, manifest_bytes, parse_manifest
from edgeface.sync.signed_calibration import SignedCalibration
from edgeface.sync.signing import Ed25519PublicKey
from edgeface.sync.validate import (
    CHUNK_BYTES_MAX,
    payload_url,
    valid_chunk_bytes,
    valid_fleet,
    valid_lifetime_days,
    valid_version,
)
from edgeface.util.timestamps import rfc3339


def gallery_hashes(gallery: Gallery) -> tuple[bytes, bytes]:
    """The identities JSON and vectors .npy bytes a device stores for `gallery` (and their hashes name)."""
    return gallery.identities_json(), npy_bytes(np.ascontiguousarray(gallery.vectors, np.float32))


def _fields(
    gallery: Gallery, fleet: str, version: int, expires_days: float | None, now: datetime
) -> dict[str, object]:
    identities, vectors = gallery_hashes(gallery)
    expires = None if expires_days is None else rfc3339(now + timedelta(days=expires_days))
    return {
        "format": FORMAT,
        "fleet": fleet,
        "version": version,
        "created": rfc3339(now),
        "expires": expires,
    } | content_fields(gallery, identities, vectors)


def check_build_arguments(
    fleet: str, version: int, expires_days: float | None = None, chunk_bytes: int = CHUNK_BYTES_MAX
) -> None:
    """Refuse (`BundleError`) what every device would reject, with the device's own checks."""
    try:
        valid_fleet(fleet)
        valid_version(version)
        if expires_days is not None:
            valid_lifetime_days(expires_days)
        valid_chunk_bytes(chunk_bytes)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc


def build_bundle(
    gallery: Gallery,
    *,
    fleet: str,
    version: int,
    key: Ed25519PrivateKey,
    expires_days: float | None = None,
    base: Gallery | None = None,
    now: datetime | None = None,
    decision: SignedCalibration | None = None,
    chunk_bytes: int = CHUNK_BYTES_MAX,
    url_base: str | None = None,
) -> bytes:
    """A signed bundle file: the whole `gallery`, or (with `base`) only its changes against `base`.

    The manifest signs the payload's size, sha256 and chunk table for `chunk_bytes` chunks (the publisher
    cuts it exactly so), when given the gallery's calibrated `decision`, and with `url_base` the
    content-addressed URL `{url_base}/{payload sha256}` devices fetch the payload from (`payload_file`)."""
    check_build_arguments(fleet, version, expires_days, chunk_bytes)
    now = now or datetime.now(UTC)
    if base is not None and base.model_sha256 != gallery.model_sha256:
        raise BundleError("delta base was made with another model; build a full bundle instead")
    if base is not None and not 0 < base.version < version:
        raise BundleError(f"delta base version {base.version} must be >= 1 and below {version}")
    if base is None:
        content, fields = gallery, _fields(gallery, fleet, version, expires_days, now)
    else:
        delta = compute_delta(base, gallery)
        result = apply_delta(base, delta, version)
        result_ids, result_vectors = gallery_hashes(result)
        content = delta.upsert
        fields = _fields(content, fleet, version, expires_days, now) | {
            "base_version": base.version,
            "remove": list(delta.remove),
            "result": {
                "count": len(result),
                "identities": sha256_bytes(result_ids),
                "vectors": sha256_bytes(result_vectors),
            },
        }
    payload = pack_payload(*gallery_hashes(content))
    binding = bind_payload(payload, chunk_bytes)
    fields["payload"] = binding.as_dict()
    if url_base is not None:
        try:
            fields["url"] = payload_url(url_base, binding.sha256)
        except ValueError as exc:
            raise BundleError(f"--url-base: {exc}") from exc
    if decision is not None:
        fields["decision"] = decision.as_dict()
    raw = manifest_bytes(fields)
    try:  # the device's own parser: whatever it would refuse is never signed
        parse_manifest(raw)
    except Rejected as exc:
        raise BundleError(f"refusing to sign a manifest every device would reject: {exc.reason}") from exc
    return pack_bundle(Bundle(raw, sign(key, raw), payload))


def load_source_gallery(path: Path, key_for_bundles: Ed25519PublicKey | None = None) -> Gallery:
    """A gallery from a store root, a version directory, or a full bundle file (verified if a key is given)."""
    if path.is_dir():
        store = GalleryStore(path)
        return store.load() if store.exists() else read_gallery_dir(path)
    bundle = read_bundle(path)
    if key_for_bundles is None:
        raise BundleError(f"{path}: a bundle used as a base needs the public key to verify it")
    verified = verify_bundle(bundle, key_for_bundles)
    if verified.manifest.is_delta:
        raise BundleError(f"{path}: is a delta; a delta base must be a full bundle or a gallery directory")
    return rows_gallery(verified.manifest, verified.rows)


def write_payload_file(bundle: bytes, directory: Path) -> Path:
    """Write a URL bundle's payload as `directory/<sha256>` (what a web server, S3 bucket or CDN serves under
    the `--url-base`); written beside, then renamed, so a reader never sees half a file."""
    parts = unpack_bundle(bundle)
    name = sha256_bytes(parts.payload)
    target = directory / name
    temporary = directory / f".{name}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(parts.payload)
        temporary.replace(target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise BundleError(f"--payload-dir {directory}: cannot write ({exc.strerror or exc})") from exc
    return target
