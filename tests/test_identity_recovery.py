"""`recover_gallery`: which stored version runs when `current` is damaged, and what happens on disk.

`test_damage.py` covers a flipped bit, a version for another embedder and `repair=False` on two versions;
here: every kind of damage a version directory can have, the newest-first order over several versions, a
dangling `current`, versions that are not candidates, the bound on what is kept aside, and the report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore, sha256_bytes
from edgeface.identity.recovery import KEEP_SET_ASIDE, SET_ASIDE_DIR, Recovery, SetAside, recover_gallery
from tests.factories import make_gallery


def fits_128(gallery: Gallery) -> Gallery:
    if gallery.dim != 128:
        raise GalleryError(f"gallery vectors are {gallery.dim}-d, the embedder gives 128-d")
    return gallery


def stored(root: Path, *versions: int, dim: dict[int, int] | None = None) -> GalleryStore:
    """A store holding these versions (the last one current)."""
    store = GalleryStore(root, keep_versions=len(versions))
    for version in versions:
        store.save(make_gallery(3 + version, version=version, dim=(dim or {}).get(version, 128)))
    return store


def version_dir(store: GalleryStore, version: int) -> Path:
    return store.root / "versions" / f"{version:012d}"


def aside(store: GalleryStore) -> list[str]:
    folder = store.root / SET_ASIDE_DIR
    return sorted(p.name[:12] for p in folder.iterdir()) if folder.is_dir() else []


def rewritten(name: str, data: bytes) -> Callable[[Path], None]:
    """Replace a file and re-hash it in the manifest: whole by its sha256, malformed inside."""

    def damage(directory: Path) -> None:
        (directory / name).write_bytes(data)
        manifest = json.loads((directory / "gallery.json").read_bytes())
        manifest[name.split(".")[0]] = sha256_bytes(data)
        (directory / "gallery.json").write_text(json.dumps(manifest))

    return damage


DAMAGE: dict[str, Callable[[Path], None]] = {
    "gallery.json missing": lambda d: (d / "gallery.json").unlink(),
    "gallery.json not JSON": lambda d: (d / "gallery.json").write_bytes(b"{not json"),
    "gallery.json not UTF-8": lambda d: (d / "gallery.json").write_bytes(b"\xff\xfe{}"),
    "gallery.json a list": lambda d: (d / "gallery.json").write_bytes(b"[]"),
    "gallery.json null": lambda d: (d / "gallery.json").write_bytes(b"null"),
    "vectors.npy missing": lambda d: (d / "vectors.npy").unlink(),
    "identities.json truncated": lambda d: (d / "identities.json").write_bytes(
        (d / "identities.json").read_bytes()[:5]
    ),
    "vectors.npy emptied": lambda d: (d / "vectors.npy").write_bytes(b""),
    "identities.json hashed but not JSON": rewritten("identities.json", b"[{"),
    "identities.json hashed but not UTF-8": rewritten("identities.json", b'[{"id": "\xff"}]'),
    "identities.json hashed but rows without ids": rewritten("identities.json", b"[1, 2, 3]"),
    "vectors.npy hashed but not an array": rewritten("vectors.npy", b"\x93NUMPY garbage"),
    "version directory emptied": lambda d: [p.unlink() for p in d.iterdir()],  # type: ignore[func-returns-value]
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_any_damage_to_the_current_version_falls_back_and_never_raises(tmp_path: Path, damage: str) -> None:
    store = stored(tmp_path / "g", 1, 2)
    DAMAGE[damage](version_dir(store, 2))
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert [s.version for s in recovery.set_aside] == ["000000000002"] and recovery.fell_back
    assert aside(store) == ["000000000002"] and store.load().version == 1


def test_the_newest_usable_version_wins_and_each_one_passed_over_is_named(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1, 2, 3, 4, dim={3: 512})
    (version_dir(store, 4) / "vectors.npy").write_bytes(b"damaged")
    (version_dir(store, 2) / "vectors.npy").write_bytes(b"damaged")  # older than the winner: not looked at
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert [s.version for s in recovery.set_aside] == ["000000000004", "000000000003", "000000000002"]
    assert "sha256" in recovery.set_aside[0].reason and "512-d" in recovery.set_aside[1].reason
    assert os.readlink(store.current_link) == "versions/000000000001"


def test_a_whole_current_version_is_run_as_is_and_older_damage_is_left_alone(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1, 2)
    (version_dir(store, 1) / "vectors.npy").write_bytes(b"damaged")
    link_before = os.readlink(store.current_link)
    recovery = recover_gallery(store, fits_128)
    assert recovery == Recovery(recovery.gallery) and recovery.gallery is not None
    assert recovery.gallery.version == 2 and not recovery.fell_back
    assert os.readlink(store.current_link) == link_before and aside(store) == []
    assert version_dir(store, 1).is_dir()


def test_nothing_stored_is_not_damage(tmp_path: Path) -> None:
    recovery = recover_gallery(GalleryStore(tmp_path / "none"), fits_128)
    assert recovery == Recovery(None) and not recovery.fell_back
    assert not (tmp_path / "none").exists()


def test_a_dangling_current_falls_back_to_the_newest_stored_version(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1, 2)
    store.current_link.unlink()
    os.symlink("versions/000000000009", store.current_link)
    dry = recover_gallery(store, fits_128, repair=False)
    assert dry.gallery is not None and dry.gallery.version == 2
    assert dry.set_aside == (SetAside("versions/000000000009", "current points at a missing version", None),)
    assert os.readlink(store.current_link) == "versions/000000000009"  # a dry run changes nothing
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is not None and recovery.gallery.version == 2
    assert os.readlink(store.current_link) == "versions/000000000002" and store.load().version == 2


def test_a_dangling_current_with_nothing_usable_is_removed_so_the_daemon_runs_empty(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1)
    (version_dir(store, 1) / "gallery.json").unlink()
    os.rename(version_dir(store, 1), store.root / "versions" / "000000000005")  # current now dangles
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is None and len(recovery.set_aside) == 2
    assert not store.current_link.is_symlink() and not store.exists()
    assert aside(store) == ["000000000005"]


def test_staging_and_other_hidden_directories_are_never_candidates(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1)
    staging = store.root / "versions" / ".staging-000000000007-123"
    staging.mkdir()
    (version_dir(store, 1) / "vectors.npy").write_bytes(b"damaged")
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is None and [s.version for s in recovery.set_aside] == ["000000000001"]
    assert staging.is_dir()  # not ours to move


def test_only_the_newest_set_aside_directories_are_kept(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g")
    store.save(make_gallery(3, version=1))
    for version in range(2, 2 + KEEP_SET_ASIDE + 2):
        store.save(make_gallery(3, version=version))
        (version_dir(store, version) / "vectors.npy").write_bytes(b"damaged")
        recovery = recover_gallery(store, fits_128)
        assert recovery.gallery is not None and recovery.gallery.version == 1
    expected = [f"{v:012d}" for v in range(2 + 2, 2 + KEEP_SET_ASIDE + 2)]
    assert aside(store) == expected


def test_the_accept_check_decides_what_fits(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1, 2)

    def only_version_1(gallery: Gallery) -> Gallery:
        if gallery.version != 1:
            raise GalleryError(f"version {gallery.version} is not wanted")
        return gallery

    recovery = recover_gallery(store, only_version_1)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert recovery.set_aside[0].reason == "version 2 is not wanted"


def test_the_summary_and_report_are_one_bounded_printable_line(tmp_path: Path) -> None:
    store = stored(tmp_path / "g", 1, 2, 3, dim={3: 512})
    fine = recover_gallery(store, fits_128, repair=False)
    assert fine.summary().startswith("version 000000000003: ") and fine.summary().endswith(
        "-> running version 2"
    )
    hostile = Recovery(None, (SetAside("v\x1b[2J", "line\nbreak" + "x" * 5000, None),))
    text = hostile.summary()
    assert "\n" not in text and "\x1b" not in text
    assert len(text) < 640 and "...[+" in text  # cut at 600 characters, saying how much was left out
    record = fine.set_aside[0].as_dict()
    assert record == {"version": "000000000003", "reason": fine.set_aside[0].reason, "moved_to": ""}
