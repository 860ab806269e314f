"""Removing and renaming a person in a stored gallery: a new version, and for a removal, erasure.

A removal writes a new version without the person (`Gallery.remove`: their vectors, sums and enrolment
embeddings are gone), then drops every other stored version that holds them, and every set-aside copy (a
damaged version cannot be shown not to hold them). A version is dropped by renaming it out of `versions/`
first (atomic), then deleting it, so a power cut never leaves a loadable version with the person in it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore, fsync_dir, read_gallery_dir
from edgeface.identity.recovery import SET_ASIDE_DIR
from edgeface.util.logsafe import printable

Recalibrate = Callable[[Gallery], Gallery]


@dataclass(frozen=True, slots=True)
class Erasure:
    identity: str
    new_version: int
    dropped_versions: tuple[int, ...]  # older versions that held the person, deleted
    set_aside_deleted: int  # set-aside (damaged) copies deleted

    def summary(self) -> str:
        dropped = ", ".join(str(v) for v in self.dropped_versions) or "none"
        return (
            f"erased {printable(self.identity)}: not in new version {self.new_version}; older versions that held "
            f"them deleted: {dropped}; set-aside copies deleted: {self.set_aside_deleted}; "
            "no stored version holds their vectors now"
        )


def _current(store: GalleryStore, identity: str) -> Gallery:
    gallery = store.load()
    if identity not in gallery.ids:
        raise GalleryError(
            f"{store.root}: no identity {printable(identity)!r} in gallery version {gallery.version}"
        )
    return gallery


def remove_person(store: GalleryStore, identity: str, recalibrate: Recalibrate) -> Erasure:
    """A new, re-calibrated version without `identity`, and every other stored copy of them deleted.

    GalleryError (nothing changed) when the current version does not hold `identity`."""
    gallery = _current(store, identity)
    smaller = recalibrate(gallery.remove({identity}).with_version(gallery.version + 1))
    target = store.save(smaller)
    dropped = []
    for directory in sorted((store.root / "versions").iterdir()):
        if directory == target or not directory.is_dir():
            continue
        version = int(directory.name) if directory.name.isdigit() else None
        if version is None or _may_hold(directory, identity):
            _drop(directory)
            if version is not None:
                dropped.append(version)
    aside = store.root / SET_ASIDE_DIR
    copies = [d for d in aside.iterdir()] if aside.is_dir() else []
    for directory in copies:
        _drop(directory)
    return Erasure(identity, smaller.version, tuple(dropped), len(copies))


def rename_person(store: GalleryStore, identity: str, name: str, recalibrate: Recalibrate) -> Gallery:
    """A new, re-calibrated version where `identity` is called `name` (its id, and so its HA entity, stays)."""
    if not name.strip():
        raise GalleryError("--name: must not be empty")
    gallery = _current(store, identity)
    names = tuple(name if i == identity else n for i, n in zip(gallery.ids, gallery.names, strict=True))
    renamed = recalibrate(replace(gallery, names=names).with_version(gallery.version + 1))
    store.save(renamed)
    return renamed


def _may_hold(directory: Path, identity: str) -> bool:
    try:
        return identity in read_gallery_dir(directory).ids
    except (GalleryError, ValueError, KeyError, TypeError, OSError, UnicodeError):
        return True  # unreadable: it cannot be shown not to hold the person


def _drop(directory: Path) -> None:
    doomed = directory.with_name(f".erase-{directory.name}")
    os.rename(directory, doomed)
    fsync_dir(directory.parent)
    shutil.rmtree(doomed)
