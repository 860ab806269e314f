"""Device-side checks that need device state, and the atomic apply (docs/design.md §4).

A bundle is applied only if its fleet, `model_sha256` and `dim` are this device's, its version is above the running
one by at most `max_version_jump` (so one signed huge version cannot end all future updates), a delta's `base_version` is exactly the running version, and it is not expired (policy `warn` accepts it
with a warning, `deny` rejects it). The resulting gallery is written through `GalleryStore.save` (temporary
directory, fsync, rename, directory fsync, symlink swap), so a power cut leaves the old or the new one, whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeface.identity.gallery import Gallery, GalleryStore, sha256_bytes
from edgeface.sync.bundle import MAX_PAYLOAD, Rows, check_binding, rows_gallery, verify_payload
from edgeface.sync.delta import apply_delta, delta_of
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import Manifest
from edgeface.sync.rawio import encode_rows, npy_view
from edgeface.sync.signed_calibration import calibration_of
from edgeface.sync.validate import (
    DEFAULT_MAX_VERSION_JUMP,
    check_version_jump,
    valid_fleet,
    valid_max_version_jump,
)
from edgeface.util.timestamps import rfc3339

log = logging.getLogger(__name__)

EXPIRY_POLICIES = ("warn", "deny")
MANIFEST_FILE = "bundle-manifest.json"
SIGNATURE_FILE = "bundle-manifest.sig"


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    fleet: str
    model_sha256: str
    expiry_policy: str = "warn"
    max_payload: int = MAX_PAYLOAD
    max_version_jump: int = DEFAULT_MAX_VERSION_JUMP
    dim: int | None = None  # the running embedder's output size, when known

    def __post_init__(self) -> None:
        if self.expiry_policy not in EXPIRY_POLICIES:
            raise ValueError(
                f"sync.expiry_policy: must be one of {EXPIRY_POLICIES}, got {self.expiry_policy!r}"
            )
        valid_fleet(self.fleet)
        valid_max_version_jump(self.max_version_jump)


def manifest_id(manifest: Manifest) -> str:
    return sha256_bytes(manifest.raw)


def is_running(manifest: Manifest, running: Gallery | None) -> bool:
    """True when `manifest` is exactly the bundle the device already runs (a re-delivery, not a replay), or
    the full bundle of the very gallery it reached by deltas (same version, same content sha256s)."""
    if running is None:
        return False
    if running.manifest.get("bundle_manifest_sha256") == manifest_id(manifest):
        return True
    return (
        not manifest.is_delta
        and running.version == manifest.version
        and running.manifest.get("identities") == manifest.identities
        and running.manifest.get("vectors") == manifest.vectors
    )


def check_device(
    manifest: Manifest, policy: DevicePolicy, running: Gallery | None, now: datetime | None = None
) -> str | None:
    """Raise `Rejected` if this device must not apply `manifest`; return a warning for `warn` expiry."""
    if manifest.fleet != policy.fleet:
        raise Rejected(
            "fleet_mismatch", f"bundle is for fleet {manifest.fleet!r}, device is in {policy.fleet!r}"
        )
    if manifest.model_sha256 != policy.model_sha256:
        raise Rejected(
            "model_mismatch",
            f"bundle is for model {manifest.model_sha256[:12]}, device runs {policy.model_sha256[:12]}",
        )
    if policy.dim is not None and manifest.dim != policy.dim:
        raise Rejected(
            "dim_mismatch",
            f"bundle vectors are {manifest.dim}-d, this device's embedder gives {policy.dim}-d",
        )
    running_version = running.version if running is not None else 0
    if manifest.version <= running_version:
        raise Rejected(
            "version_not_newer", f"version {manifest.version} is not above running {running_version}"
        )
    try:
        check_version_jump(manifest.version, running_version, policy.max_version_jump)
    except ValueError as exc:
        raise Rejected("version_jump", str(exc)) from exc
    if manifest.is_delta and manifest.base_version != running_version:
        raise Rejected(
            "base_mismatch", f"delta against version {manifest.base_version}, device runs {running_version}"
        )
    if manifest.expired(now):
        expires = rfc3339(manifest.expires)
        if policy.expiry_policy == "deny":
            raise Rejected("expired", f"bundle expired at {expires} (policy deny)")
        return f"bundle expired at {expires} (policy warn: still matching)"
    return None


@dataclass(frozen=True, slots=True)
class Materialised:
    """The gallery to store, with its identities/vectors file bytes already encoded (and verified)."""

    gallery: Gallery
    identities: bytes | memoryview
    vectors: bytes | memoryview


def materialise(manifest: Manifest, rows: Rows, running: Gallery | None) -> Materialised:
    """The full gallery a verified bundle describes; a delta must reproduce its signed result hashes."""
    info = {
        "fleet": manifest.fleet,
        "created": rfc3339(manifest.created),
        "expires": None if manifest.expires is None else rfc3339(manifest.expires),
        "bundle_manifest_sha256": manifest_id(manifest),
    }
    result = manifest.result
    if not manifest.is_delta:
        gallery = rows_gallery(manifest, rows)
        identities, vectors = rows.identities_raw, rows.vectors_raw
    else:
        if running is None or running.version != manifest.base_version:
            raise Rejected("base_mismatch", f"delta needs version {manifest.base_version} to be running")
        gallery = apply_delta(running, delta_of(manifest, rows), manifest.version)
        identities = encode_rows(gallery.ids, gallery.names, gallery.samples)
        vectors = npy_view(gallery.vectors)
        if (  # result is always set for a parsed delta
            result is None
            or len(gallery) != result.count
            or sha256_bytes(identities) != result.identities
            or sha256_bytes(vectors) != result.vectors
        ):
            raise Rejected("result_mismatch", "applying the delta does not give the signed result gallery")
    info["identities"], info["vectors"] = (
        (manifest.identities, manifest.vectors) if result is None else (result.identities, result.vectors)
    )
    final = Gallery(
        gallery.ids,
        gallery.names,
        gallery.samples,
        gallery.vectors,
        gallery.model_sha256,
        manifest.version,
        None,
        info,
        calibration=calibration_of(manifest.decision, len(gallery)) if manifest.decision else None,
    )
    return Materialised(final, identities, vectors)


def commit(store: GalleryStore, made: Materialised, manifest: Manifest, signature: bytes) -> None:
    """Write the gallery atomically (verified bytes as they are), with the signed manifest beside it."""
    files = {
        "identities.json": made.identities,
        "vectors.npy": made.vectors,
        MANIFEST_FILE: manifest.raw,
        SIGNATURE_FILE: signature,
    }
    try:
        store.save(made.gallery, files)  # bytes-like views are written as they are
    except OSError as exc:
        raise Rejected("apply_failed", f"writing gallery {manifest.version} failed ({exc})") from exc


def running_expired(running: Gallery | None, now: datetime | None = None) -> bool:
    expires = running.manifest.get("expires") if running is not None else None
    if not expires:
        return False
    return (now or datetime.now(UTC)) >= datetime.fromisoformat(expires)


def apply_payload(
    store: GalleryStore,
    policy: DevicePolicy,
    manifest: Manifest,
    signature: bytes,
    payload: bytes | memoryview,
    running: Gallery | None,
) -> tuple[Gallery, str | None]:
    """Check, verify, build and atomically store a signature-checked bundle; returns it and any warning."""
    warning = check_device(manifest, policy, running)
    rows = verify_payload(manifest, payload)
    check_binding(manifest, payload)
    made = materialise(manifest, rows, running)
    commit(store, made, manifest, signature)
    return made.gallery, warning
