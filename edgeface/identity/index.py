"""Nearest-identity search: hnswlib (cosine) with an exact re-rank of its candidates, or exact search.

hnswlib must not be queried while items are added, so an index is never mutated after it is built:
a new gallery gets a new index, and `IndexHolder.swap` replaces the reference in one assignment.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.types import SearchHit


@dataclass(frozen=True, slots=True)
class IndexSettings:
    kind: str = "auto"  # "auto" | "hnsw" | "exact"
    exact_below: int = 10_000  # "auto": exact matmul below this many identities (bench/results/search.json)
    m: int = 16
    ef_construction: int = 200
    ef: int = 256
    rerank: int = 8
    num_threads: int = 1


class _Candidates(Protocol):
    """The part of `hnswlib.Index` (untyped) the index uses: approximate neighbours, re-ranked exactly."""

    def knn_query(self, data: np.ndarray, k: int, num_threads: int) -> tuple[np.ndarray, np.ndarray]: ...


class GalleryIndex:
    """Immutable search structure over one gallery's vectors."""

    def __init__(self, gallery: Gallery, settings: IndexSettings = IndexSettings()) -> None:
        self.gallery = gallery
        self.settings = settings
        self._vectors = np.ascontiguousarray(gallery.vectors, np.float32)
        use_hnsw = settings.kind == "hnsw" or (
            settings.kind == "auto" and len(gallery) >= settings.exact_below
        )
        self._hnsw = self._build_hnsw() if use_hnsw and len(gallery) else None

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def _build_hnsw(self) -> _Candidates:
        import hnswlib

        s = self.settings
        index = hnswlib.Index(space="cosine", dim=self.gallery.dim)
        index.init_index(max_elements=len(self.gallery), ef_construction=s.ef_construction, M=s.m)
        index.add_items(self._vectors, np.arange(len(self.gallery)), num_threads=s.num_threads)
        index.set_ef(max(s.ef, s.rerank))
        candidates: _Candidates = index  # hnswlib ships no types: this is the interface relied on
        return candidates

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
            top = np.argsort(-scores, axis=1)[:, :k]
            return [[SearchHit(int(i), float(scores[q, i])) for i in row] for q, row in enumerate(top)]
        candidates, _ = self._hnsw.knn_query(queries, k=min(n, max(k, self.settings.rerank)), num_threads=1)
        results = []
        for query, row in zip(queries, candidates, strict=True):
            exact = self._vectors[row] @ query
            order = np.argsort(-exact)[:k]
            results.append([SearchHit(int(row[i]), float(exact[i])) for i in order])
        return results


class IndexHolder:
    """The index recognition uses now; replaced whole, never modified, so readers never block."""

    def __init__(self, index: GalleryIndex) -> None:
        self._index = index
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> GalleryIndex:
        return self._index

    def swap(self, index: GalleryIndex) -> GalleryIndex:
        with self._swap_lock:
            previous, self._index = self._index, index
        return previous
