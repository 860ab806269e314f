"""Integrity of a stored gallery version: a checksum over every file, and range checks on every value.

`GalleryStore.save` writes `SHA256SUMS` (sha256sum format: ``<hex>  <name>``, one line per file, sorted)
beside the files of a version directory; `read_gallery_dir` refuses a version whose files do not match it
exactly (a changed, missing or unlisted file), so one flipped bit anywhere, including in the calibrated
decision of `gallery.json`, is detected and the version is set aside (`edgeface.identity.recovery`). On top
of that every stored value is parsed strictly and range-checked, as the config is: JSON without NaN or
Infinity, a positive integer version, a threshold in (0, 1], a margin in [0, 1), finite unit vectors whose
count and size agree with the manifest, ids and names by `edgeface.util.labels`. A version written before
checksums existed (no `SHA256SUMS`) is still range-checked, and `doctor` says it is unsealed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, GalleryError
from edgeface.identity.calibration import Calibration
from edgeface.util.fields import bounded, check_value
from edgeface.util.labels import check_label
from edgeface.util.logsafe import printable

SUMS_FILE = "SHA256SUMS"
REQUIRED_FILES = ("gallery.json", "identities.json", "vectors.npy")
UNIT_NORM_TOLERANCE = 1e-3
MAX_STORED_VERSION = 2**53 - 1  # as a signed manifest's version (edgeface.sync.validate.MAX_VERSION)
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9._-]{1,64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _below_one(value: float) -> None:
    if not value < 1.0:
        raise ValueError(f"must be below 1, got {value!r}")


# the limits of a stored decision, declared once as the config's are (edgeface.util.fields)
DECISION_LIMITS: dict[str, Any] = {
    "threshold": bounded(None, 0.0, 1.0, low_open=True).metadata,
    "margin": bounded(None, 0.0, check=_below_one).metadata,
    "target_fpir": bounded(None, 0.0, low_open=True, check=_below_one).metadata,
    "est_fpir": bounded(None, 0.0, 1.0).metadata,
    "est_dir": bounded(None, 0.0, 1.0).metadata,
    "n_impostor": bounded(None, 0).metadata,
    "n_genuine": bounded(None, 0).metadata,
    "identities": bounded(None, 0).metadata,
}
_INTEGER_FIELDS = frozenset({"n_impostor", "n_genuine", "identities"})


def seal(files: Mapping[str, bytes | memoryview]) -> bytes:
    """The `SHA256SUMS` bytes for a version directory's files."""
    lines = [f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)]
    return "".join(lines).encode()


def check_sums(files: Mapping[str, bytes | memoryview], sums: bytes, where: str) -> None:
    """Every file listed with its sha256, and nothing else: GalleryError naming the first mismatch."""
    try:
        text = sums.decode("ascii")
    except UnicodeDecodeError:
        raise GalleryError(f"{where}: {SUMS_FILE} is not ASCII") from None
    if not text.endswith("\n"):
        raise GalleryError(f"{where}: {SUMS_FILE} does not end with a newline")
    lines = text[:-1].split("\n")  # exactly as written: no other line separator is accepted
    listed: dict[str, str] = {}
    for line in lines:
        found = _SUM_LINE.fullmatch(line)
        if found is None or found[2] in listed:
            raise GalleryError(f"{where}: {SUMS_FILE} has a malformed line {printable(line, 80)!r}")
        listed[found[2]] = found[1]
    missing = sorted(set(listed) - set(files))
    unlisted = sorted(set(files) - set(listed))
    if missing or unlisted:
        raise GalleryError(
            f"{where}: files differ from {SUMS_FILE} (missing {missing or 'none'}, unlisted {unlisted or 'none'})"
        )
    for name, digest in sorted(listed.items()):
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise GalleryError(f"{where}: {name} does not match its sha256 in {SUMS_FILE} (damaged on disk)")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def strict_json(raw: bytes, what: str) -> Any:
    """JSON as the standard defines it: NaN, Infinity, huge integers and deep nesting are refused."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise GalleryError(f"{what}: not valid JSON ({printable(exc, 160)})") from None


def _integer(raw: object, key: str, low: int, high: int, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        raise GalleryError(
            f"{where}: gallery.json {key} must be an integer in {low}..{high}, got {printable(repr(raw), 40)}"
        )
    return raw


def check_manifest(manifest: object, where: str) -> dict[str, Any]:
    """gallery.json's own fields: format, version, model, counts; the decision by `parse_decision`."""
    if not isinstance(manifest, dict):
        raise GalleryError(f"{where}: gallery.json is not a JSON object")
    if manifest.get("format", "edgeface-gallery/1") != "edgeface-gallery/1":
        raise GalleryError(
            f"{where}: gallery.json format {printable(repr(manifest.get('format')), 40)} is not ours"
        )
    _integer(manifest.get("version"), "version", 1, MAX_STORED_VERSION, where)
    _integer(manifest.get("dim"), "dim", 1, 65536, where)
    _integer(manifest.get("count"), "count", 0, 2**31, where)
    for key in ("model_sha256", "identities", "vectors"):
        if not isinstance(manifest.get(key), str) or not _HEX64.fullmatch(manifest[key]):
            raise GalleryError(f"{where}: gallery.json {key} must be a sha256 (64 lowercase hex digits)")
    if manifest.get("dtype", "float32") != "float32":
        raise GalleryError(f"{where}: gallery.json dtype must be float32")
    return manifest


def parse_decision(raw: object, where: str) -> Calibration | None:
    """The stored calibration, every value typed and within its declared limits."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise GalleryError(f"{where}: gallery.json decision must be an object")
    for key, meta in DECISION_LIMITS.items():
        value = raw.get(key)
        if value is None and key in {"est_dir", "identities"}:
            continue
        number = int | float if key not in _INTEGER_FIELDS else int
        if not isinstance(value, number) or isinstance(value, bool):
            raise GalleryError(
                f"{where}: gallery.json decision.{key} must be a number, got {printable(repr(value), 40)}"
            )
        try:
            check_value(f"decision.{key}", value, meta)
        except ConfigError as exc:  # names the key and the limits
            raise GalleryError(f"{where}: gallery.json {exc}") from None
    if "method" in raw and not isinstance(raw["method"], str):
        raise GalleryError(f"{where}: gallery.json decision.method must be text")
    try:
        return Calibration.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise GalleryError(f"{where}: gallery.json has a malformed decision ({exc!r})") from exc


def parse_rows(
    raw: bytes, count: int, where: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """identities.json: exactly `count` rows of a valid id, a valid name and a positive sample count."""
    rows = strict_json(raw, f"{where}: identities.json")
    if not isinstance(rows, list) or len(rows) != count:
        raise GalleryError(f"{where}: identities.json must be a list of {count} rows (gallery.json count)")
    ids, names, samples = [], [], []
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"id", "name", "samples"}:
            raise GalleryError(f"{where}: identities.json row {n} must have exactly id, name, samples")
        try:
            ids.append(check_label(row["id"], f"identities.json row {n} id"))
            names.append(check_label(row["name"], f"identities.json row {n} name", allow_empty=True))
        except ValueError as exc:
            raise GalleryError(f"{where}: {exc}") from None
        samples.append(_integer(row["samples"], f"identities row {n} samples", 0, 2**31, where))
    return tuple(ids), tuple(names), tuple(samples)


def check_vectors(vectors: np.ndarray, count: int, dim: int, where: str) -> np.ndarray:
    """(count, dim) float32, finite, each row of unit length."""
    if vectors.dtype != np.float32 or vectors.shape != (count, dim):
        raise GalleryError(
            f"{where}: vectors.npy is {vectors.dtype} {vectors.shape}, gallery.json says float32 ({count}, {dim})"
        )
    if not np.isfinite(vectors).all():
        raise GalleryError(f"{where}: vectors.npy holds NaN or infinity")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if len(norms) and float(np.abs(norms - 1.0).max()) > UNIT_NORM_TOLERANCE:
        raise GalleryError(
            f"{where}: vectors.npy rows are not unit length (norm {float(norms.min()):.4f}..{float(norms.max()):.4f})"
        )
    return vectors


def check_finite(array: np.ndarray | None, name: str, where: str) -> None:
    if array is not None and (array.dtype.kind != "f" or not np.isfinite(array).all()):
        raise GalleryError(f"{where}: {name} must hold finite floats")
