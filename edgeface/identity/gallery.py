"""The gallery: one aggregated, L2-normalised vector per identity, stored so a power cut leaves a whole one.

On disk a gallery root holds `versions/<n>/` directories and a `current` symlink that is replaced
atomically (new symlink + rename + directory fsync). A version directory holds `identities.json`,
`vectors.npy` (the aggregated vectors the index uses), `sums.npy` (sums of normalised enrolment
embeddings, so enrolling more photos later stays exact), `enrolment.npy` + `enrolment_labels.npy` (each
enrolment embedding and its identity row, so the open-set threshold is re-calibrated whenever someone is
enrolled), `gallery.json` (its manifest, with the calibration under `decision`) and `SHA256SUMS` (the
sha256 of every other file, checked with every value's range on each load: `edgeface.identity.integrity`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeface.errors import GalleryError
from edgeface.identity import integrity
from edgeface.identity.calibration import Calibration, TailShape, calibrate
from edgeface.util.files import MAX_GALLERY_FILE_BYTES, FileRefused, read_bytes
from edgeface.util.labels import check_label
from edgeface.util.vectors import l2_normalize

if TYPE_CHECKING:
    from edgeface.identity.rule import CardFallback

FileBytes = bytes | memoryview  # file contents; a verified bundle's views are written without a copy


@dataclass(frozen=True, slots=True)
class Gallery:
    ids: tuple[str, ...]
    names: tuple[str, ...]
    samples: tuple[int, ...]
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    model_sha256: str
    version: int = 0
    sums: np.ndarray | None = field(default=None, repr=False)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    enrolment: np.ndarray | None = field(default=None, repr=False)  # (M, D) every enrolment embedding
    enrolment_labels: np.ndarray | None = field(default=None, repr=False)  # (M,) identity row of each
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if (
            not (len(self.names) == len(self.samples) == n)
            or self.vectors.ndim != 2
            or len(self.vectors) != n
        ):
            raise GalleryError(
                f"gallery: {n} ids, {len(self.names)} names, vectors {self.vectors.shape} disagree"
            )
        if len(set(self.ids)) != n:
            raise GalleryError("gallery: identity ids are not unique")
        if (self.enrolment is None) != (self.enrolment_labels is None) or (
            self.enrolment is not None
            and self.enrolment_labels is not None
            and (len(self.enrolment) != len(self.enrolment_labels) or self.enrolment.shape[1:] != (self.dim,))
        ):
            raise GalleryError("gallery: enrolment embeddings and their labels disagree")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, dim: int, model_sha256: str) -> Gallery:
        return cls(
            (), (), (), np.zeros((0, dim), np.float32), model_sha256, 0, np.zeros((0, dim), np.float32)
        )

    def enroll(self, identity: str, name: str, embeddings: np.ndarray) -> Gallery:
        """A new gallery with these normalised embeddings added to `identity` (created if new)."""
        try:
            check_label(identity, "identity id")
            check_label(name, "identity name", allow_empty=True)
        except ValueError as exc:
            raise GalleryError(f"gallery: {exc}") from None
        embeddings = l2_normalize(np.atleast_2d(embeddings))
        if embeddings.shape[1] != self.dim:
            raise GalleryError(f"gallery: embedding dim {embeddings.shape[1]} != gallery dim {self.dim}")
        sums = (
            self.sums
            if self.sums is not None
            else self.vectors * np.asarray(self.samples, np.float32)[:, None]
        )
        ids, names, samples = list(self.ids), list(self.names), list(self.samples)
        row = ids.index(identity) if identity in ids else len(ids)
        kept, kept_labels = self._enrolment_rows()
        enrolment = np.vstack([kept, embeddings]).astype(np.float32)
        enrolment_labels = np.concatenate([kept_labels, np.full(len(embeddings), row, np.int32)])
        if identity in ids:
            i = ids.index(identity)
            sums = sums.copy()
            sums[i] += embeddings.sum(0)
            samples[i] += len(embeddings)
            names[i] = name or names[i]
        else:
            ids.append(identity)
            names.append(name or identity)
            samples.append(len(embeddings))
            sums = np.vstack([sums, embeddings.sum(0, keepdims=True)])
        return Gallery(
            tuple(ids),
            tuple(names),
            tuple(samples),
            l2_normalize(sums),
            self.model_sha256,
            self.version,
            sums.astype(np.float32),
            enrolment=enrolment,
            enrolment_labels=enrolment_labels,
        )

    def _enrolment_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if self.enrolment is None or self.enrolment_labels is None:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int32)
        return self.enrolment, self.enrolment_labels

    def calibrated(self, target_fpir: float, margin: float, prior: TailShape | None) -> Gallery:
        """This gallery with its open-set threshold chosen on its own enrolment photos (None if too few)."""
        embeddings, labels = self._enrolment_rows()
        calibration = calibrate(embeddings, labels, target_fpir, margin, prior) if len(labels) else None
        return replace(self, calibration=calibration)

    def calibrated_with_card(self, target_fpir: float, card: CardFallback | None) -> Gallery:
        """Calibrated as every enrolment calibrates (enroll, gallery build, the demo): no margin, and the
        embedder card's impostor tail as the prior a small gallery leans on."""
        return self.calibrated(target_fpir, 0.0, card.shape if card is not None else None)

    def remove(self, identities: set[str]) -> Gallery:
        keep = [i for i, x in enumerate(self.ids) if x not in identities]
        pick = np.asarray(keep, np.int64)
        enrolment, labels = None, None
        if self.enrolment is not None and self.enrolment_labels is not None:
            new_row = np.full(len(self.ids), -1, np.int64)
            new_row[pick] = np.arange(len(pick))
            rows = new_row[self.enrolment_labels] >= 0
            enrolment, labels = self.enrolment[rows], new_row[self.enrolment_labels[rows]].astype(np.int32)
        return Gallery(
            tuple(self.ids[i] for i in keep),
            tuple(self.names[i] for i in keep),
            tuple(self.samples[i] for i in keep),
            self.vectors[pick],
            self.model_sha256,
            self.version,
            None if self.sums is None else self.sums[pick],
            enrolment=enrolment,
            enrolment_labels=labels,
        )

    def with_version(self, version: int) -> Gallery:
        return replace(self, version=version, manifest={})

    def identities_json(self) -> bytes:
        rows = [
            {"id": i, "name": n, "samples": s}
            for i, n, s in zip(self.ids, self.names, self.samples, strict=True)
        ]
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_npy(data: bytes, what: str) -> np.ndarray:
    import io

    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise GalleryError(f"{what}: not a valid .npy array ({exc})") from exc
    if not isinstance(loaded, np.ndarray):  # an .npz archive loads as a mapping of arrays
        raise GalleryError(f"{what}: not a valid .npy array (an .npz archive)")
    return loaded


def sha256_bytes(data: FileBytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_synced(path: Path, data: FileBytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GalleryStore:
    """Versioned on-disk galleries under one root, switched atomically through the `current` symlink."""

    def __init__(self, root: str | Path, keep_versions: int = 2) -> None:
        self.root = Path(root)
        self.keep_versions = keep_versions

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    def exists(self) -> bool:
        return self.current_link.exists()

    def load(self) -> Gallery:
        if not self.current_link.exists():
            raise GalleryError(f"{self.root}: no gallery here (enroll someone or apply a bundle first)")
        return read_gallery_dir(self.current_link.resolve())

    def save(self, gallery: Gallery, extra_files: dict[str, FileBytes] | None = None) -> Path:
        """Write `gallery` as a new version directory and switch `current` to it atomically."""
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        target = versions / f"{gallery.version:012d}"
        staging = versions / f".staging-{gallery.version:012d}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        files = sealed_files(gallery_files(gallery, extra_files) | (extra_files or {}))
        for name, data in files.items():
            _write_synced(staging / name, data)
        fsync_dir(staging)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
        fsync_dir(versions)
        link_tmp = self.root / f".current-{os.getpid()}"
        if link_tmp.is_symlink() or link_tmp.exists():
            link_tmp.unlink()
        os.symlink(Path("versions") / target.name, link_tmp)
        os.replace(link_tmp, self.current_link)
        fsync_dir(self.root)
        self._prune(versions, keep=target.name)
        return target

    def _prune(self, versions: Path, keep: str) -> None:
        for leftover in versions.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        old = sorted(d.name for d in versions.iterdir() if d.is_dir() and d.name != keep)
        for name in old[: max(0, len(old) - (self.keep_versions - 1))]:
            shutil.rmtree(versions / name, ignore_errors=True)


def content_fields(gallery: Gallery, identities: FileBytes, vectors: FileBytes) -> dict[str, Any]:
    """What a stored version's manifest and a signed bundle's manifest both say about the content."""
    return {
        "model_sha256": gallery.model_sha256,
        "dim": gallery.dim,
        "dtype": "float32",
        "count": len(gallery),
        "identities": sha256_bytes(identities),
        "vectors": sha256_bytes(vectors),
    }


def gallery_files(gallery: Gallery, encoded: dict[str, FileBytes] | None = None) -> dict[str, FileBytes]:
    """The files of a version directory; `encoded` may already hold this gallery's "identities.json" and
    "vectors.npy" bytes (e.g. a verified bundle's), so a large gallery is not encoded a second time."""
    encoded = encoded or {}
    identities = encoded["identities.json"] if "identities.json" in encoded else gallery.identities_json()
    vectors = (
        encoded["vectors.npy"] if "vectors.npy" in encoded else npy_bytes(gallery.vectors.astype(np.float32))
    )
    manifest = (
        {"format": "edgeface-gallery/1", "version": gallery.version}
        | content_fields(gallery, identities, vectors)
    ) | {k: v for k, v in gallery.manifest.items() if k not in {"identities", "vectors", "count", "dim"}}
    if gallery.calibration is not None:
        manifest["decision"] = gallery.calibration.as_dict()
    files: dict[str, FileBytes] = {
        "identities.json": identities,
        "vectors.npy": vectors,
        "gallery.json": json.dumps(manifest, indent=2).encode(),
    }
    if gallery.sums is not None:
        files["sums.npy"] = npy_bytes(gallery.sums.astype(np.float32))
    if gallery.enrolment is not None and gallery.enrolment_labels is not None:
        files["enrolment.npy"] = npy_bytes(gallery.enrolment.astype(np.float32))
        files["enrolment_labels.npy"] = npy_bytes(gallery.enrolment_labels.astype(np.int32))
    return files


def sealed_files(files: dict[str, FileBytes]) -> dict[str, FileBytes]:
    """`files` plus the `SHA256SUMS` over all of them, as a version directory is written."""
    content = {name: data for name, data in files.items() if name != integrity.SUMS_FILE}
    return content | {integrity.SUMS_FILE: integrity.seal(content)}


def read_gallery_dir(directory: Path) -> Gallery:
    """Load and check a version directory: its `SHA256SUMS`, every sha256 in its manifest, every value."""
    try:
        files = {
            p.name: read_bytes(p, MAX_GALLERY_FILE_BYTES, "gallery file")
            for p in directory.iterdir()
            if p.is_file() and not p.name.startswith(".")
        }
    except (OSError, FileRefused) as exc:
        raise GalleryError(f"{directory}: unreadable gallery ({exc})") from exc
    return parse_gallery_files(files, str(directory))


def parse_gallery_files(files: Mapping[str, bytes], where: str) -> Gallery:
    """The gallery a version directory's files (name -> bytes) hold, or GalleryError saying what is wrong."""
    missing = [name for name in integrity.REQUIRED_FILES if name not in files]
    if missing:
        raise GalleryError(f"{where}: incomplete gallery (no {', '.join(missing)})")
    content = {name: data for name, data in files.items() if name != integrity.SUMS_FILE}
    if integrity.SUMS_FILE in files:
        integrity.check_sums(content, files[integrity.SUMS_FILE], where)
    manifest = integrity.check_manifest(
        integrity.strict_json(files["gallery.json"], f"{where}: gallery.json"), where
    )
    if (
        sha256_bytes(files["identities.json"]) != manifest["identities"]
        or sha256_bytes(files["vectors.npy"]) != manifest["vectors"]
    ):
        raise GalleryError(f"{where}: identities/vectors do not match the manifest's sha256")
    count, dim = manifest["count"], manifest["dim"]
    ids, names, samples = integrity.parse_rows(files["identities.json"], count, where)
    vectors = integrity.check_vectors(
        load_npy(files["vectors.npy"], f"{where}/vectors.npy"), count, dim, where
    )
    optional = {
        name: load_npy(files[name], f"{where}/{name}") if name in files else None
        for name in ("sums.npy", "enrolment.npy", "enrolment_labels.npy")
    }
    integrity.check_finite(optional["sums.npy"], "sums.npy", where)
    integrity.check_finite(optional["enrolment.npy"], "enrolment.npy", where)
    enrolment, labels = optional["enrolment.npy"], optional["enrolment_labels.npy"]
    if labels is not None and (
        labels.dtype.kind != "i" or (len(labels) and not 0 <= labels.min() <= labels.max() < count)
    ):
        raise GalleryError(f"{where}: enrolment_labels.npy must hold identity rows 0..{count - 1}")
    extra = {k: v for k, v in manifest.items() if k not in {"format", "version", "model_sha256", "decision"}}
    return Gallery(
        ids,
        names,
        samples,
        vectors,
        manifest["model_sha256"],
        manifest["version"],
        optional["sums.npy"],
        extra,
        enrolment=None if enrolment is None else enrolment.astype(np.float32),
        enrolment_labels=None if labels is None else labels.astype(np.int32),
        calibration=integrity.parse_decision(manifest.get("decision"), where),
    )


def is_sealed(directory: Path) -> bool:
    """False for a version written before `SHA256SUMS` existed: range-checked, but not checksummed."""
    return (directory / integrity.SUMS_FILE).is_file()
