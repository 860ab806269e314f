"""The gallery: one aggregated, L2-normalised vector per identity, stored so a power cut leaves a whole one.

On disk a gallery root holds `versions/<n>/` directories and a `current` symlink that is replaced
atomically (new symlink + rename + directory fsync). A version directory holds `identities.json`,
`vectors.npy` (the aggregated vectors the index uses), `sums.npy` (sums of normalised enrolment
embeddings, so enrolling more photos later stays exact) and `gallery.json` (its manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.embed import l2_normalize
from edgeface.errors import GalleryError


@dataclass(frozen=True, slots=True)
class Gallery:
    ids: tuple[str, ...]
    names: tuple[str, ...]
    samples: tuple[int, ...]
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    model_sha256: str
    version: int = 0
    sums: np.ndarray | None = field(default=None, repr=False)
    manifest: dict = field(default_factory=dict, repr=False)

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
        embeddings = l2_normalize(np.atleast_2d(embeddings))
        if embeddings.shape[1] != self.dim:
            raise GalleryError(f"gallery: embedding dim {embeddings.shape[1]} != gallery dim {self.dim}")
        sums = (
            self.sums
            if self.sums is not None
            else self.vectors * np.asarray(self.samples, np.float32)[:, None]
        )
        ids, names, samples = list(self.ids), list(self.names), list(self.samples)
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
        )

    def remove(self, identities: set[str]) -> Gallery:
        keep = [i for i, x in enumerate(self.ids) if x not in identities]
        pick = np.asarray(keep, np.int64)
        return Gallery(
            tuple(self.ids[i] for i in keep),
            tuple(self.names[i] for i in keep),
            tuple(self.samples[i] for i in keep),
            self.vectors[pick],
            self.model_sha256,
            self.version,
            None if self.sums is None else self.sums[pick],
        )

    def with_version(self, version: int) -> Gallery:
        return Gallery(
            self.ids, self.names, self.samples, self.vectors, self.model_sha256, version, self.sums
        )

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
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise GalleryError(f"{what}: not a valid .npy array ({exc})") from exc


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
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

    def save(self, gallery: Gallery, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write `gallery` as a new version directory and switch `current` to it atomically."""
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        target = versions / f"{gallery.version:012d}"
        staging = versions / f".staging-{gallery.version:012d}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        files = gallery_files(gallery, extra_files) | (extra_files or {})
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


def gallery_files(gallery: Gallery, encoded: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The files of a version directory; `encoded` may already hold this gallery's "identities.json" and
    "vectors.npy" bytes (e.g. a verified bundle's), so a large gallery is not encoded a second time."""
    encoded = encoded or {}
    identities = encoded["identities.json"] if "identities.json" in encoded else gallery.identities_json()
    vectors = (
        encoded["vectors.npy"] if "vectors.npy" in encoded else npy_bytes(gallery.vectors.astype(np.float32))
    )
    manifest = {
        "format": "edgeface-gallery/1",
        "version": gallery.version,
        "model_sha256": gallery.model_sha256,
        "dim": gallery.dim,
        "dtype": "float32",
        "count": len(gallery),
        "identities": sha256_bytes(identities),
        "vectors": sha256_bytes(vectors),
    } | {k: v for k, v in gallery.manifest.items() if k not in {"identities", "vectors", "count", "dim"}}
    files = {
        "identities.json": identities,
        "vectors.npy": vectors,
        "gallery.json": json.dumps(manifest, indent=2).encode(),
    }
    if gallery.sums is not None:
        files["sums.npy"] = npy_bytes(gallery.sums.astype(np.float32))
    return files


def read_gallery_dir(directory: Path) -> Gallery:
    """Load and check a version directory: every sha256 in its manifest must match."""
    try:
        manifest = json.loads((directory / "gallery.json").read_bytes())
        identities_raw = (directory / "identities.json").read_bytes()
        vectors_raw = (directory / "vectors.npy").read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise GalleryError(f"{directory}: incomplete or unreadable gallery ({exc})") from exc
    if sha256_bytes(identities_raw) != manifest.get("identities") or sha256_bytes(
        vectors_raw
    ) != manifest.get("vectors"):
        raise GalleryError(f"{directory}: identities/vectors do not match the manifest's sha256")
    rows = json.loads(identities_raw)
    vectors = load_npy(vectors_raw, str(directory / "vectors.npy")).astype(np.float32)
    sums_path = directory / "sums.npy"
    sums = load_npy(sums_path.read_bytes(), str(sums_path)) if sums_path.exists() else None
    extra = {k: v for k, v in manifest.items() if k not in {"format", "version", "model_sha256"}}
    return Gallery(
        tuple(r["id"] for r in rows),
        tuple(r["name"] for r in rows),
        tuple(int(r["samples"]) for r in rows),
        vectors,
        manifest["model_sha256"],
        int(manifest["version"]),
        sums,
        extra,
    )
