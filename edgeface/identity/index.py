"""Nearest-identity search: hnswlib (cosine) with an exact re-rank of its candidates, or exact search.

A `GalleryIndex` is never mutated once it is live: hnswlib must not be queried while items are added, and a
half-applied change would be a mixed gallery. `updated(gallery)` builds the next index beside the live one;
for HNSW it copies the graph and patches the copy (remove, replace, add) instead of rebuilding it: a 1%
delta at 100k x 512 went live in 3.8 s (2.1 s of it the index) against a 91 s rebuild of the same gallery
(bench/results/sync.json). hnswlib's `add_items` is not safe beside `knn_query` on the same graph,
hence the copy (`copy_graph`). The new index goes
live through `edgeface.identity.live.GoLive`, together with its decision rule.

hnswlib labels are stable slots, not gallery rows: a delta that removes identities shifts the rows after
them, so each index keeps the row of every label (and the label of every row).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.types import SearchHit
from edgeface.util.fields import bounded, check_fields


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """Search settings, chosen by bench/search.py (bench/results/search.json, 100k identities).

    Exact search answers right by definition and stays within 1 ms p99 up to 10k identities at 128-d (the
    default embedder; 3k at 512-d). Above it hnswlib: at 100k no setting measured reached recall@1 0.999
    within 1 ms, so ef is the highest-recall one within 5 ms p99 (a door searches once per track decision,
    not per frame): ef 512 gave recall@1 0.998 (128-d) and 0.990 (512-d) on clustered vectors."""

    kind: str = bounded("auto", choices=("auto", "hnsw", "exact"))
    exact_below: int = bounded(10_000, 0)  # "auto": exact matmul below this many identities
    m: int = bounded(16, 4, 64)
    ef_construction: int = bounded(100, 16, 2000)
    ef: int = bounded(512, 8, 4096)
    rerank: int = bounded(8, 1, 256)
    num_threads: int = bounded(2, 1, 64)  # builds and patches (queries always use one thread)
    # Patch the live graph only while the changes plus the tombstones they leave stay below this fraction of
    # the gallery; beyond it a new graph is as cheap and better connected.
    patch_below: float = bounded(0.25, 0.0, 1.0)

    def __post_init__(self) -> None:
        check_fields(self, "gallery")

    def wants_hnsw(self, identities: int) -> bool:
        if identities == 0:
            return False
        return self.kind == "hnsw" or (self.kind == "auto" and identities >= self.exact_below)


@dataclass(frozen=True, slots=True)
class Changes:
    """How a new gallery differs from the indexed one, by identity id."""

    removed_rows: np.ndarray  # rows of the old gallery whose ids are gone
    old_row: np.ndarray  # per new row: the old row of the same id, or -1 for a new id
    changed: np.ndarray  # per new row: True when the id is new or its vector differs

    @property
    def count(self) -> int:
        return len(self.removed_rows) + int(self.changed.sum())


def changes_between(old: Gallery, new: Gallery) -> Changes:
    position = {identity: row for row, identity in enumerate(old.ids)}
    old_row = np.fromiter((position.get(i, -1) for i in new.ids), np.int64, len(new))
    kept = old_row >= 0
    changed = ~kept
    if kept.any():
        differs = np.any(old.vectors[old_row[kept]] != new.vectors[kept], axis=1)
        changed[np.flatnonzero(kept)[differs]] = True
    present = np.zeros(len(old), bool)
    present[old_row[kept]] = True
    return Changes(np.flatnonzero(~present), old_row, changed)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, best first (ties by position), without sorting all of them."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.lexsort((part, -scores[part]))]
    return np.argsort(-scores, kind="stable")[:k]


def copy_graph(graph: Any) -> Any:
    """A copy of an hnswlib index. Its copy constructor holds the GIL throughout (0.32 s at 20k x 512, so
    recognition stops); a save and load through memory-backed /dev/shm took 0.07 s, in holds of <= 43 ms."""
    import hnswlib

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        path = str(Path(tmp) / "graph.bin")
        graph.save_index(path)
        copy = hnswlib.Index(space=graph.space, dim=graph.dim)
        copy.load_index(path, max_elements=graph.get_max_elements())
    return copy


class _Candidates(Protocol):
    """The part of `hnswlib.Index` (untyped) the index uses: approximate neighbours, re-ranked exactly."""

    def knn_query(self, data: np.ndarray, k: int, num_threads: int) -> tuple[np.ndarray, np.ndarray]: ...


class GalleryIndex:
    """Search structure over one gallery's vectors; immutable once built."""

    def __init__(
        self,
        gallery: Gallery,
        settings: IndexSettings = IndexSettings(),
        *,
        _graph: tuple[Any, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.gallery = gallery
        self.settings = settings
        self._vectors = np.ascontiguousarray(gallery.vectors, np.float32)
        self._hnsw: Any = None
        self._row_of_label = self._label_of_row = np.zeros(0, np.int64)
        self.patched = _graph is not None  # True: the previous index's graph, copied and patched
        if _graph is not None:
            self._hnsw, self._row_of_label, self._label_of_row = _graph
        elif settings.wants_hnsw(len(gallery)):
            self._hnsw = self._build_hnsw()
            self._label_of_row = np.arange(len(gallery), dtype=np.int64)
            self._row_of_label = self._label_of_row.copy()

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def _build_hnsw(self) -> Any:
        import hnswlib

        s = self.settings
        index = hnswlib.Index(space="cosine", dim=self.gallery.dim)
        index.init_index(
            max_elements=len(self.gallery),
            ef_construction=s.ef_construction,
            M=s.m,
            random_seed=1,
        )
        index.add_items(self._vectors, np.arange(len(self.gallery)), num_threads=s.num_threads)
        index.set_ef(max(s.ef, s.rerank))
        candidates: _Candidates = index  # hnswlib ships no types: this is the interface relied on
        return candidates

    def updated(self, gallery: Gallery, settings: IndexSettings | None = None) -> GalleryIndex:
        """The index of `gallery`, built beside this one (which keeps serving meanwhile): the HNSW graph is
        copied and patched when the settings are the same and the changes small, else built anew."""
        settings = settings or self.settings
        if (
            self._hnsw is None
            or settings != self.settings
            or gallery.dim != self.gallery.dim
            or not settings.wants_hnsw(len(gallery))
        ):
            return GalleryIndex(gallery, settings)
        changes = changes_between(self.gallery, gallery)
        tombstones = self._hnsw.get_current_count() - len(self.gallery)
        if changes.count + tombstones > settings.patch_below * len(gallery):
            return GalleryIndex(gallery, settings)
        return GalleryIndex(gallery, settings, _graph=self._patched(gallery, changes))

    def _patched(self, gallery: Gallery, changes: Changes) -> tuple[Any, np.ndarray, np.ndarray]:
        """Removed and replaced rows are marked deleted, new and replaced vectors added under fresh labels.
        (hnswlib's in-place update and slot reuse re-link the neighbours' neighbours: 15x slower than an
        insert here, so deleted slots stay as tombstones until the next full build.)"""
        graph = copy_graph(self._hnsw)  # a copy: readers of the live index never see a half-done change
        graph.set_ef(max(self.settings.ef, self.settings.rerank))
        kept = changes.old_row >= 0
        unchanged = kept & ~changes.changed
        replaced_old_rows = changes.old_row[kept & changes.changed]
        for label in self._label_of_row[np.concatenate([changes.removed_rows, replaced_old_rows])]:
            graph.mark_deleted(int(label))
        label_of_row = np.full(len(gallery), -1, np.int64)
        label_of_row[unchanged] = self._label_of_row[changes.old_row[unchanged]]
        fresh = np.flatnonzero(changes.changed)
        label_of_row[fresh] = len(self._row_of_label) + np.arange(len(fresh))
        if len(fresh):
            room = graph.get_max_elements() - graph.get_current_count()
            if len(fresh) > room:
                graph.resize_index(graph.get_current_count() + len(fresh))
            vectors = np.ascontiguousarray(gallery.vectors[fresh], np.float32)
            graph.add_items(vectors, label_of_row[fresh], num_threads=self.settings.num_threads)
        row_of_label = np.full(len(self._row_of_label) + len(fresh), -1, np.int64)
        row_of_label[label_of_row] = np.arange(len(gallery))
        return graph, row_of_label, label_of_row

    def search(self, queries: np.ndarray, k: int = 2) -> list[list[SearchHit]]:
        """Top-k hits per query by exact cosine (HNSW only proposes candidates), best first."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.gallery.dim:
            raise GalleryError(f"query dim {queries.shape[1]} != gallery dim {self.gallery.dim}")
        n = len(self.gallery)
        if n == 0:
            return [[] for _ in queries]
        k = min(k, n)
        if self._hnsw is None:
            scores = queries @ self._vectors.T
            return [[SearchHit(int(i), float(row[i])) for i in top_k(row, k)] for row in scores]
        labels, _ = self._hnsw.knn_query(queries, k=min(n, max(k, self.settings.rerank)), num_threads=1)
        results = []
        for query, row in zip(queries, self._row_of_label[labels], strict=True):
            exact = self._vectors[row] @ query
            order = np.argsort(-exact)[:k]
            results.append([SearchHit(int(row[i]), float(exact[i])) for i in order])
        return results
