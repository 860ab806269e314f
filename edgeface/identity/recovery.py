"""Falling back to the newest usable gallery version when the current one is damaged or unusable.

The store keeps a few versions (`GalleryStore.keep_versions`). When `current` fails its sha256 check, is
unreadable, or was made for another embedder (model or `dim`), `recover_gallery` moves that version
directory aside into `<root>/set-aside/` (kept for inspection, never loaded again), tries the older
versions newest first, and points `current` at the first one that loads and fits. The daemon runs this at
start and on SIGHUP, so one flipped bit on disk never stops recognition; what was set aside is reported in
`status`, `metrics` and the log by the caller. With `repair=False` (for `doctor`) nothing on disk changes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeface.errors import EdgefaceError, GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore, fsync_dir, read_gallery_dir
from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)

SET_ASIDE_DIR = "set-aside"
KEEP_SET_ASIDE = 4  # newest set-aside directories kept; older ones are deleted


@dataclass(frozen=True, slots=True)
class SetAside:
    """One version directory that could not be used, and why."""

    version: str  # the directory name under versions/
    reason: str
    moved_to: Path | None  # None when nothing was moved (repair=False)

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "reason": self.reason, "moved_to": str(self.moved_to or "")}


@dataclass(frozen=True, slots=True)
class Recovery:
    """The gallery to run (None: no usable version) and the versions passed over to reach it."""

    gallery: Gallery | None
    set_aside: tuple[SetAside, ...] = ()

    @property
    def fell_back(self) -> bool:
        return bool(self.set_aside)

    def summary(self) -> str:
        skipped = "; ".join(f"version {s.version}: {s.reason}" for s in self.set_aside)
        using = f"running version {self.gallery.version}" if self.gallery else "no usable version left"
        return printable(f"{skipped} -> {using}", 600)


def _versions_newest_first(store: GalleryStore) -> list[Path]:
    versions = store.root / "versions"
    if not versions.is_dir():
        return []
    found = [d for d in versions.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return sorted(found, key=lambda d: d.name, reverse=True)


def _try_load(directory: Path, accept: Callable[[Gallery], Gallery]) -> Gallery:
    """The gallery in `directory` if it is whole and fits; GalleryError with the reason otherwise."""
    try:
        return accept(read_gallery_dir(directory))
    except EdgefaceError as exc:
        raise GalleryError(str(exc)) from exc
    except (ValueError, KeyError, TypeError, OSError, UnicodeError) as exc:
        raise GalleryError(f"{directory}: malformed gallery ({type(exc).__name__}: {exc})") from exc


def _move_aside(store: GalleryStore, directory: Path) -> Path:
    aside = store.root / SET_ASIDE_DIR
    aside.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = aside / f"{directory.name}-{stamp}"
    os.rename(directory, target)
    fsync_dir(directory.parent)
    fsync_dir(aside)
    for old in sorted(aside.iterdir(), key=lambda p: p.name.rsplit("-", 1)[-1])[:-KEEP_SET_ASIDE]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _set_aside(store: GalleryStore, directory: Path) -> Path | None:
    try:
        return _move_aside(store, directory)
    except OSError as exc:  # a read-only or full disk: still run the older version, leave this one
        log.error("cannot move gallery version %s aside (%s)", directory.name, exc)
        return None


def _point_current(store: GalleryStore, directory: Path | None) -> None:
    link = store.current_link
    if directory is None:
        if link.is_symlink():
            link.unlink()
            fsync_dir(store.root)
        return
    temporary = store.root / f".current-recover-{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(Path("versions") / directory.name, temporary)
    os.replace(temporary, link)
    fsync_dir(store.root)


def recover_gallery(
    store: GalleryStore, accept: Callable[[Gallery], Gallery], *, repair: bool = True
) -> Recovery:
    """The newest usable version, current first; with `repair`, unusable ones are moved aside and
    `current` is re-pointed. `accept` returns the gallery or raises GalleryError if it does not fit."""
    link = store.current_link
    if not link.is_symlink() and not link.exists():
        return Recovery(None)  # nothing stored yet: not damage
    current = link.resolve() if link.exists() else None
    candidates = [d for d in _versions_newest_first(store) if d.resolve() != current]
    passed: list[SetAside] = []
    if current is not None:
        candidates.insert(0, current)
    else:  # a dangling `current`: fall back to the newest stored version
        passed.append(
            SetAside(printable(os.readlink(link), 200), "current points at a missing version", None)
        )
    for directory in candidates:
        try:
            gallery = _try_load(directory, accept)
        except GalleryError as exc:
            moved = _set_aside(store, directory) if repair else None
            passed.append(SetAside(directory.name, printable(str(exc), 300), moved))
            log.error(
                "gallery version %s unusable (%s)%s",
                directory.name,
                printable(str(exc), 300),
                f"; moved aside to {moved}" if moved else "",
            )
            continue
        if passed and repair:
            _repoint(store, directory)
        return Recovery(gallery, tuple(passed))
    if repair:
        _repoint(store, None)
    return Recovery(None, tuple(passed))


def _repoint(store: GalleryStore, directory: Path | None) -> None:
    try:
        _point_current(store, directory)
    except OSError as exc:  # the caller runs the recovered gallery from memory either way
        log.error("cannot re-point %s (%s)", store.current_link, exc)
