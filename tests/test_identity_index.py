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
from edgeface.identity.graph import principal_axes
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.sync.delta import Delta, apply_delta
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


# --- live updates: a delta patched into a copy of the running index ---------------------------------------

DIM = 32


def noisy(vectors: np.ndarray, seed: int, sigma: float = 0.05) -> np.ndarray:
    out = vectors + sigma * np.random.default_rng(seed).standard_normal(vectors.shape).astype(np.float32)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def churned(base: Gallery, fraction: float, seed: int, version: int) -> tuple[Gallery, Delta]:
    """`base` with `fraction` of its identities removed, as many replaced and as many added (a sync delta)."""
    rng = np.random.default_rng(seed)
    k = max(1, round(len(base) * fraction))
    picked = rng.choice(len(base), 2 * k, replace=False)
    removed = tuple(base.ids[i] for i in picked[:k])
    replaced = [base.ids[i] for i in picked[k:]]
    added = [f"new{version}-{i}" for i in range(k)]
    vectors = unit_vectors(2 * k, DIM, seed=seed + 1000)
    upsert = Gallery(
        tuple(replaced + added), tuple(replaced + added), (1,) * (2 * k), vectors, MODEL, version
    )
    delta = Delta(removed, upsert)
    return apply_delta(base, delta, version), delta


def recall_at_1(index: GalleryIndex, queries: np.ndarray) -> float:
    truth = np.argmax(queries @ index.gallery.vectors.T, axis=1)
    found = [hits[0].index for hits in index.search(queries, k=1)]
    return float(np.mean(np.asarray(found) == truth))


def test_exact_live_delta_answers_exactly_as_a_rebuild() -> None:
    base = make_gallery(500, dim=DIM, seed=1)
    new, _ = churned(base, 0.05, seed=2, version=2)
    live = GalleryIndex(base, IndexSettings(kind="exact")).updated(new)
    rebuilt = GalleryIndex(new, IndexSettings(kind="exact"))
    queries = noisy(new.vectors[::7], seed=3)
    assert live.search(queries, k=5) == rebuilt.search(queries, k=5)  # ids and scores, hit for hit


def test_hnsw_live_delta_patches_the_graph_and_keeps_the_rebuilds_recall() -> None:
    # Weak on purpose, so recall < 1 and a worse graph would show; one thread, so builds are repeatable.
    settings = IndexSettings(kind="hnsw", m=8, ef_construction=40, ef=16, rerank=2, num_threads=1)
    base = make_gallery(3000, dim=DIM, seed=4)
    running = GalleryIndex(base, settings)
    queries = unit_vectors(400, DIM, seed=6)  # random queries: close calls, where a graph can miss
    before = running.search(queries, k=3)
    new, _ = churned(base, 0.02, seed=5, version=2)
    live = running.updated(new)
    assert live.patched and live.kind == "hnsw" and not running.patched
    rebuilt = recall_at_1(GalleryIndex(new, settings), queries)
    assert recall_at_1(live, queries) >= rebuilt - 0.03, (recall_at_1(live, queries), rebuilt)
    assert running.search(queries, k=3) == before  # the running index is untouched by the patch


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_live_delta_never_returns_removed_ids_and_answers_replaced_ids_with_their_new_vectors(
    kind: str,
) -> None:
    base = make_gallery(1000, dim=DIM, seed=7)
    new, delta = churned(base, 0.03, seed=8, version=2)
    live = GalleryIndex(base, IndexSettings(kind=kind)).updated(new)
    old = {i: base.vectors[r] for r, i in enumerate(base.ids)}
    for hits in live.search(np.stack([old[i] for i in delta.remove]), k=10):
        for hit in hits:  # a removed vector finds only others, with their own exact scores
            assert new.ids[hit.index] not in delta.remove and hit.score < 0.99
    k = len(delta.remove)
    replaced, replacements = delta.upsert.ids[:k], delta.upsert.vectors[:k]
    tops = live.search(replacements, k=1)
    assert [new.ids[hits[0].index] for hits in tops] == list(replaced)
    assert all(hits[0].score == pytest.approx(1.0, abs=1e-5) for hits in tops)
    added = live.search(delta.upsert.vectors[k:], k=1)
    assert [new.ids[hits[0].index] for hits in added] == list(delta.upsert.ids[k:])


def test_a_chain_of_hnsw_deltas_grows_the_graph_stays_right_and_is_rebuilt_when_tombstones_pile_up() -> None:
    settings = IndexSettings(kind="hnsw", patch_below=0.5)
    gallery = make_gallery(400, dim=DIM, seed=9)
    index = GalleryIndex(gallery, settings)
    patched: list[bool] = []
    for version in range(2, 9):
        gallery, _ = churned(gallery, 0.04, seed=version, version=version)
        grown = Gallery(  # and a few more added than removed, so the graph must grow past its capacity
            (*gallery.ids, f"extra{version}"),
            (*gallery.ids, f"extra{version}"),
            (*gallery.samples, 1),
            np.vstack([gallery.vectors, unit_vectors(1, DIM, seed=50 + version)]),
            MODEL,
            version,
        )
        gallery = grown
        index = index.updated(gallery)
        patched.append(index.patched)
        assert len(index.gallery) == len(gallery)
        found = [hits[0].index for hits in index.search(gallery.vectors, k=1)]
        assert found == list(range(len(gallery)))  # every identity finds itself at its own row
    # Tombstones pile up (removed and replaced rows) until a full build is cheaper; then patching resumes.
    rebuilt_at = patched.index(False) if False in patched else None
    assert rebuilt_at is not None and rebuilt_at >= 4 and patched[rebuilt_at + 1], patched


def test_a_large_change_or_new_settings_build_a_new_graph() -> None:
    settings = IndexSettings(kind="hnsw", patch_below=0.25)
    base = make_gallery(400, dim=DIM, seed=10)
    running = GalleryIndex(base, settings)
    large, _ = churned(base, 0.15, seed=11, version=2)  # 45% of the rows change
    assert not running.updated(large).patched
    small, _ = churned(base, 0.02, seed=12, version=2)
    assert not running.updated(small, IndexSettings(kind="hnsw", ef=64)).patched
    assert running.updated(small).patched


# --- the standby graph: a delta patches a graph no reader uses; the replaced one catches up afterwards ------


def test_a_fresh_index_gets_a_built_standby_that_the_next_delta_patches() -> None:
    settings = IndexSettings(kind="hnsw", num_threads=1)
    base = make_gallery(600, dim=DIM, seed=13)
    running = GalleryIndex(base, settings)
    assert not running.has_standby
    assert running.prepare_standby(None) == "built" and running.has_standby
    new, delta = churned(base, 0.02, seed=14, version=2)
    live = running.updated(new)
    assert live.patched and not running.has_standby and not live.has_standby  # the standby was used up
    assert live.prepare_standby(running) == "caught up" and live.has_standby
    assert [h[0].index for h in live.search(new.vectors, k=1)] == list(range(len(new)))
    assert not {new.ids[h.index] for hits in live.search(base.vectors, k=5) for h in hits} & set(delta.remove)


def test_a_retired_index_answers_its_own_gallery_exactly_while_its_graph_is_reused() -> None:
    settings = IndexSettings(kind="hnsw", num_threads=1)
    base = make_gallery(800, dim=DIM, seed=15)
    running = GalleryIndex(base, settings)
    running.prepare_standby(None)
    new, _ = churned(base, 0.02, seed=16, version=2)
    live = running.updated(new)
    live.prepare_standby(running)  # retires running's graph and patches it into live's standby
    queries = unit_vectors(50, DIM, seed=17)
    exact = GalleryIndex(base, IndexSettings(kind="exact")).search(queries, k=3)
    assert running.kind == "hnsw" and running.search(queries, k=3) == exact  # old rows, exact answers
    assert live.updated(new).patched  # the caught-up graph serves as the next standby


def test_a_standby_is_only_caught_up_from_the_index_it_was_patched_from() -> None:
    settings = IndexSettings(kind="hnsw", num_threads=1)
    base = make_gallery(500, dim=DIM, seed=18)
    running = GalleryIndex(base, settings)
    new, _ = churned(base, 0.02, seed=19, version=2)
    live = running.updated(new)  # no standby: a copy of running's graph was patched
    stranger = GalleryIndex(base, settings)
    assert live.prepare_standby(stranger) == "built"  # not the base: its graph is left alone
    assert stranger.updated(new).patched  # its graph was not retired: it can still be copied and patched
    assert live.has_standby and live.updated(new).patched


# --- the graph searches the gallery projected onto its principal axes; the re-rank uses the full vectors ----


def embedding_shaped(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors whose variance falls off as 1/i over the dimensions (as bench/search.py's clustered)."""
    scale = np.arange(1, dim + 1, dtype=np.float32) ** -0.5
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32) * scale
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def shaped_gallery(n: int, dim: int, seed: int, version: int = 1) -> Gallery:
    ids = tuple(f"id{i:06d}" for i in range(n))
    return Gallery(ids, ids, (1,) * n, embedding_shaped(n, dim, seed), MODEL, version)


def test_principal_axes_are_orthonormal_span_the_strong_directions_and_are_skipped_when_not_smaller() -> None:
    rng = np.random.default_rng(30)
    vectors = rng.standard_normal((3000, 12)).astype(np.float32) * np.array([5, 4, 3] + [0.1] * 9, np.float32)
    axes = principal_axes(vectors, 3)
    assert axes is not None and axes.shape == (12, 3) and axes.dtype == np.float32
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-5)
    assert np.abs(axes[3:]).max() < 0.05  # the three strong coordinates, nothing of the weak ones
    np.testing.assert_array_equal(principal_axes(vectors, 3), axes)  # same gallery, same axes
    assert principal_axes(vectors, 0) is None and principal_axes(vectors, 12) is None


def test_a_reduced_graph_proposes_candidates_whose_exact_re_rank_matches_exact_search() -> None:
    gallery = shaped_gallery(3000, dim=96, seed=31)
    queries = noisy(gallery.vectors[::30], seed=32, sigma=0.03)
    reduced = GalleryIndex(gallery, IndexSettings(kind="hnsw", reduce_to=16, rerank=32, num_threads=1))
    full = GalleryIndex(gallery, IndexSettings(kind="hnsw", reduce_to=0, num_threads=1))
    assert reduced.graph_dim == 16 and full.graph_dim == 96
    assert GalleryIndex(gallery, IndexSettings(kind="exact")).graph_dim is None
    exact = GalleryIndex(gallery, IndexSettings(kind="exact")).search(queries, k=2)
    hits = reduced.search(queries, k=2)
    for query, pair in zip(queries, hits, strict=True):  # exact cosines on the full vectors, best first
        assert [h.score for h in pair] == pytest.approx(
            [float(gallery.vectors[h.index] @ query) for h in pair]
        )
    agreed = sum(h[0].index == e[0].index for h, e in zip(hits, exact, strict=True))
    assert agreed >= len(queries) - 1, f"reduced graph + re-rank agreed with exact search on {agreed}"


def test_a_delta_is_patched_in_the_axes_of_the_graph_it_patches_and_a_new_graph_fits_its_own() -> None:
    settings = IndexSettings(kind="hnsw", reduce_to=16, num_threads=1, patch_below=0.5)
    base = shaped_gallery(2000, dim=96, seed=33)
    running = GalleryIndex(base, settings)
    running.prepare_standby(None)
    added = shaped_gallery(2040, dim=96, seed=34, version=2)
    keep = base.remove(set(base.ids[:40]))
    new = Gallery(
        keep.ids + tuple(f"new{i}" for i in range(40)),
        keep.names + tuple(f"new{i}" for i in range(40)),
        keep.samples + (1,) * 40,
        np.vstack([keep.vectors, added.vectors[2000:]]),
        MODEL,
        2,
    )
    live = running.updated(new)
    assert live.patched and live.graph_dim == 16
    assert live.prepare_standby(running) == "caught up"
    # the new identities are found by their own vectors in the graph the patch made, and in its standby
    for _ in range(2):
        assert [h[0].index for h in live.search(new.vectors[-40:], k=1)] == list(
            range(len(new) - 40, len(new))
        )
        live = live.updated(new)
        assert live.patched
    rebuilt = GalleryIndex(new, settings)
    queries = noisy(new.vectors[::20], seed=35, sigma=0.03)
    assert recall_at_1(live, queries) >= recall_at_1(rebuilt, queries) - 0.02
    assert not np.array_equal(rebuilt._axes, running._axes)  # a new graph fits axes to its own gallery
