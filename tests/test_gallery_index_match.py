import os

import numpy as np
import pytest

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery, GalleryStore, load_npy, npy_bytes
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.live import GoLive
from edgeface.identity.match import decide
from edgeface.identity.rule import MatchRule
from edgeface.util.vectors import l2_normalize
from tests.factories import rule_of

SHA = "ab" * 32


def random_gallery(n: int, dim: int = 32, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    gallery = Gallery.empty(dim, SHA)
    for i in range(n):
        gallery = gallery.enroll(f"p{i}", f"Person {i}", rng.normal(size=(3, dim)))
    return gallery


def test_identity_vector_is_renormalised_mean_and_enrolment_is_incremental() -> None:
    rng = np.random.default_rng(1)
    a, b = l2_normalize(rng.normal(size=(2, 16))), l2_normalize(rng.normal(size=(3, 16)))
    once = Gallery.empty(16, SHA).enroll("x", "X", np.vstack([a, b]))
    twice = Gallery.empty(16, SHA).enroll("x", "X", a).enroll("x", "", b)
    expected = l2_normalize(np.vstack([a, b]).mean(0))
    np.testing.assert_allclose(once.vectors[0], expected, atol=1e-6)
    np.testing.assert_allclose(twice.vectors[0], expected, atol=1e-6)
    assert twice.samples == (5,) and twice.names == ("X",)


def test_store_round_trip_and_atomic_switch(tmp_path) -> None:
    store = GalleryStore(tmp_path / "g")
    first = random_gallery(3).with_version(1)
    store.save(first)
    store.save(random_gallery(4, seed=2).with_version(2))
    loaded = store.load()
    assert loaded.version == 2 and len(loaded) == 4
    assert os.readlink(tmp_path / "g" / "current") == "versions/000000000002"


def test_store_detects_tampered_vectors(tmp_path) -> None:
    store = GalleryStore(tmp_path)
    directory = store.save(random_gallery(3).with_version(1))
    data = bytearray((directory / "vectors.npy").read_bytes())
    data[-1] ^= 0x01
    (directory / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="sha256"):
        store.load()


def test_missing_gallery_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(GalleryError, match="no gallery here"):
        GalleryStore(tmp_path / "nothing").load()


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_search_finds_noisy_copies(kind: str) -> None:
    gallery = random_gallery(300, dim=64)
    index = GalleryIndex(gallery, IndexSettings(kind=kind))
    assert index.kind == kind
    rng = np.random.default_rng(5)
    queries = l2_normalize(gallery.vectors[:50] + 0.05 * rng.normal(size=(50, 64)))
    hits = index.search(queries, k=2)
    assert [h[0].index for h in hits] == list(range(50))
    assert all(h[0].score >= h[1].score for h in hits)


def test_empty_gallery_decides_unknown() -> None:
    index = GalleryIndex(Gallery.empty(8, SHA))
    match = decide(index, rule_of(0.5), np.ones(8))
    assert match.decision == "unknown" and match.identity is None


def test_threshold_and_margin_rule() -> None:
    vectors = l2_normalize(np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]))
    gallery = Gallery(("a", "b", "c"), ("A", "B", "C"), (1, 1, 1), vectors, SHA)
    index = GalleryIndex(gallery)
    near_a = np.array([1.0, 0.05, 0.0])
    assert decide(index, rule_of(0.9, 0.0), near_a).identity.id == "a"
    assert decide(index, rule_of(0.9, 0.5), near_a).decision == "unknown"  # b is too close
    assert decide(index, rule_of(0.999, 0.0), near_a).decision == "unknown"


def test_go_live_replaces_the_index_and_the_rule_in_one_value() -> None:
    live = GoLive(random_gallery(2), lambda g: MatchRule(0.5 + len(g) / 100, 0.0, "config", "by size"))
    previous = live.current
    replacement = live.publish(random_gallery(5))
    assert (
        live.current is replacement and len(replacement.gallery) == 5 and replacement.rule.threshold == 0.55
    )
    assert len(previous.gallery) == 2 and previous.rule.threshold == 0.52  # the old value is left whole


def test_load_npy_reads_an_npy_and_refuses_an_npz_archive() -> None:
    import io

    vectors = np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(load_npy(npy_bytes(vectors), "vectors.npy"), vectors)
    archive = io.BytesIO()
    np.savez(archive, vectors=vectors)
    with pytest.raises(GalleryError, match=r"^vectors\.npy: not a valid \.npy array \(an \.npz archive\)$"):
        load_npy(archive.getvalue(), "vectors.npy")
