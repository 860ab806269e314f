"""`GalleryIndex` (edgeface/identity/index.py): which search runs, and that its answers are exact cosines either way.

`test_gallery_index_match.py` runs the enrol -> index -> decide chain (noisy copies found by both kinds, an
empty gallery, the holder swap); here the index's own rules: the `auto` switch at `exact_below`, HNSW
candidates re-ranked to exact scores in the same order as exact search, `k` beyond the gallery, query shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex, IndexSettings
from tests.factories import MODEL, make_gallery, unit_vectors


@pytest.mark.parametrize(("size", "kind"), [(49, "exact"), (50, "hnsw")])
def test_auto_switches_to_hnsw_at_exact_below(size: int, kind: str) -> None:
    assert GalleryIndex(make_gallery(size, dim=16), IndexSettings(exact_below=50)).kind == kind


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_an_explicit_kind_is_used_whatever_the_size(kind: str) -> None:
    assert GalleryIndex(make_gallery(3, dim=16), IndexSettings(kind=kind, exact_below=0)).kind == kind


def test_an_empty_gallery_never_builds_hnsw_and_answers_each_query_with_nothing() -> None:
    index = GalleryIndex(Gallery.empty(16, MODEL), IndexSettings(kind="hnsw"))
    assert index.kind == "exact" and index.search(unit_vectors(3, 16)) == [[], [], []]


def test_hnsw_reports_exact_cosines_in_the_exact_order() -> None:
    gallery = make_gallery(2000, dim=32, seed=4)
    queries = unit_vectors(40, 32, seed=99)  # random: neighbours are close calls, unlike noisy copies
    exact = GalleryIndex(gallery, IndexSettings(kind="exact")).search(queries, k=5)
    approx = GalleryIndex(gallery, IndexSettings(kind="hnsw", rerank=32)).search(queries, k=5)
    for query, hits in zip(queries, approx, strict=True):
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for hit in hits:  # the score is the exact cosine of that row, not hnswlib's distance
            assert hit.score == pytest.approx(float(gallery.vectors[hit.index] @ query), abs=1e-6)
    found = sum(a[0].index == e[0].index for a, e in zip(approx, exact, strict=True))
    assert found >= 38, f"HNSW top-1 agreed with exact search on {found}/40 queries"


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_k_beyond_the_gallery_returns_every_identity_once(kind: str) -> None:
    gallery = make_gallery(3, dim=16)
    (hits,) = GalleryIndex(gallery, IndexSettings(kind=kind)).search(gallery.vectors[1], k=10)
    assert sorted(h.index for h in hits) == [0, 1, 2] and hits[0].index == 1
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)


def test_queries_may_be_one_vector_or_a_batch_of_any_float_dtype() -> None:
    gallery = make_gallery(10, dim=16)
    index = GalleryIndex(gallery)
    single = index.search(gallery.vectors[7].astype(np.float64), k=1)
    batch = index.search(gallery.vectors[[7, 2, 7]], k=1)
    assert [[h.index for h in r] for r in single] == [[7]]
    assert [r[0].index for r in batch] == [7, 2, 7]


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_query_of_another_dim_is_a_gallery_error(kind: str) -> None:
    index = GalleryIndex(make_gallery(5, dim=16), IndexSettings(kind=kind))
    with pytest.raises(GalleryError, match="query dim 8 != gallery dim 16"):
        index.search(np.ones(8, np.float32))
