"""remove_person / rename_person on a real store: a new version, older copies gone, refusals change nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import GalleryError
from edgeface.identity.erasure import remove_person, rename_person
from edgeface.identity.gallery import Gallery, GalleryStore
from tests.factories import make_gallery


def same(gallery: Gallery) -> Gallery:
    return gallery


def stored(root: Path) -> list[Path]:
    return sorted((root / "versions").iterdir())


def test_removal_drops_every_version_holding_the_person_even_unreadable_ones(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path, keep_versions=5)
    store.save(make_gallery(3, version=1))
    store.save(make_gallery(1, start=2, version=2))  # id000001 is not in version 2
    store.save(make_gallery(3, version=3))
    (stored(tmp_path)[0] / "vectors.npy").write_bytes(b"damaged")  # version 1 cannot be read any more
    erasure = remove_person(store, "id000001", same)
    assert erasure.new_version == 4 and erasure.dropped_versions == (1, 3)
    assert [d.name for d in stored(tmp_path)] == ["000000000002", "000000000004"]  # version 2 never held them
    current = store.load()
    assert current.ids == ("id000000", "id000002") and current.version == 4
    assert "erased id000001" in erasure.summary() and "deleted: 1, 3" in erasure.summary()
    assert not list(tmp_path.rglob(".erase-*"))


def test_an_absent_id_or_an_empty_name_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path)
    store.save(make_gallery(2, version=1))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(GalleryError, match="no identity 'ghost' in gallery version 1"):
        remove_person(store, "ghost", same)
    with pytest.raises(GalleryError, match="no identity"):
        rename_person(store, "ghost", "G", same)
    with pytest.raises(GalleryError, match="--name: must not be empty"):
        rename_person(store, "id000000", "  ", same)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_rename_keeps_ids_and_vectors(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path)
    store.save(make_gallery(2, version=1))
    renamed = rename_person(store, "id000001", "Ada", same)
    loaded = store.load()
    assert loaded.version == renamed.version == 2 and loaded.names == ("Person 0", "Ada")
    assert loaded.ids == ("id000000", "id000001")
    assert np.array_equal(loaded.vectors, make_gallery(2).vectors)
