"""Nearest-identity search: hnswlib (cosine) with an exact re-rank of its candidates, or exact search.

The graph holds the gallery projected onto its principal axes (`IndexSettings.reduce_to` dims, fitted on the
gallery when a graph is first built, kept by every patch and standby of it): low-dim distances make a wide
graph search cheap, and the re-rank of its candidates on the full vectors makes the answers exact cosines.

A `GalleryIndex` answers the same once built: hnswlib must not be queried while items are added, and a
half-applied change would be a mixed gallery. `updated(gallery)` builds the next index beside the live one;
for HNSW it patches (remove, replace, add) instead of rebuilding: not the live graph but the index's standby,
a second graph of the same gallery that no reader uses (`edgeface.identity.graph`). Once the new index is live
(through `edgeface.identity.live.GoLive`, with its decision rule), `prepare_standby` retires the graph it
replaced and applies the same patch to it, so it becomes the next standby; after a full build the standby is
a second build. Two graphs per HNSW gallery (only above `exact_below`), never a GIL-holding copy on the way to
go-live; without a standby (an index never published, or its standby failed) a copy is patched instead.

hnswlib labels are stable slots, not gallery rows: a delta that removes identities shifts the rows after
them, so each index keeps the row of every label (and the label of every row); both graphs of a gallery carry
the same labels.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.identity.graph import (
    GraphShape,
    Patch,
    SharedGraph,
    apply_patch,
    build_graph,
    principal_axes,
)
from edgeface.types import SearchHit
from edgeface.util.fields import bounded, check_fields


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """Search settings, chosen by bench/search.py (bench/results/search.json, 100k identities).

    Exact search answers right by definition and stays within 1 ms p99 up to 10k identities (0.89 ms at
    512-d; 30k at 128-d, the default embedder's). Above it two stages: hnswlib searches the gallery projected
    onto its `reduce_to` principal axes (fitted on the gallery at build, so on any embedder's vectors), and its
    `rerank` candidates are re-ranked by exact cosine on the full vectors. Cheap low-dim distances buy a wide
    search (M 32, ef 256) within 1 ms: recall@1 1.000 at 100k on clustered and uniform vectors at 512-d and
    128-d (worst p99 0.75 ms CPU), where a graph of the full 512-d vectors needed 3.4 ms for 0.999 (M 32)."""

    kind: str = bounded("auto", choices=("auto", "hnsw", "exact"))
    exact_below: int = bounded(10_000, 0)  # "auto": exact matmul below this many identities
    m: int = bounded(32, 4, 64)
    ef_construction: int = bounded(200, 16, 2000)
    ef: int = bounded(256, 8, 4096)
    rerank: int = bounded(32, 1, 256)
    # Dims of the graph's vectors (the gallery's top principal axes); 0, or not below the gallery's: full vectors.
    reduce_to: int = bounded(64, 0, 4096)
    num_threads: int = bounded(2, 1, 64)  # full builds (queries one thread, a standby build one)
    # Deltas (and the retired graph's catch-up) run beside recognition: one thread leaves it a core.
    patch_threads: int = bounded(1, 1, 64)
    # Patch the live graph only while the changes plus the tombstones they leave stay below this fraction of
    # the gallery; beyond it a new graph (and new axes) is as cheap and better connected.
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


_COMPARE_ROWS = 2048


def changes_between(old: Gallery, new: Gallery) -> Changes:
    position = {identity: row for row, identity in enumerate(old.ids)}
    old_row = np.fromiter((position.get(i, -1) for i in new.ids), np.int64, len(new))
    kept = old_row >= 0
    changed = ~kept
    kept_rows = np.flatnonzero(kept)
    for start in range(0, len(kept_rows), _COMPARE_ROWS):  # in blocks: no 200 MB temporaries at 100k x 512
        rows = kept_rows[start : start + _COMPARE_ROWS]
        changed[rows] = np.any(old.vectors[old_row[rows]] != new.vectors[rows], axis=1)
    present = np.zeros(len(old), bool)
    present[old_row[kept]] = True
    return Changes(np.flatnonzero(~present), old_row, changed)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, best first (ties by position), without sorting all of them."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.lexsort((part, -scores[part]))]
    return np.argsort(-scores, kind="stable")[:k]


class GalleryIndex:
    """Search structure over one gallery's vectors; its answers never change once built.

    An HNSW index may also hold a standby: a second graph of the same gallery that no reader uses, which the
    next delta patches (`updated`). It is made after the index went live (`prepare_standby`)."""

    def __init__(
        self,
        gallery: Gallery,
        settings: IndexSettings = IndexSettings(),
        *,
        _patched: tuple[Any, Patch, GalleryIndex] | None = None,
    ) -> None:
        self.gallery = gallery
        self.settings = settings
        self._vectors = np.ascontiguousarray(gallery.vectors, np.float32)
        self._graph: SharedGraph | None = None
        self._standby: Any = None  # a graph of this gallery no reader uses, for the next delta to patch
        self._patch: Patch | None = None  # the patch that made this index's graph from its base's
        self._base: weakref.ref[GalleryIndex] | None = None  # the index `updated` patched this one from
        self._row_of_label = self._label_of_row = np.zeros(0, np.int64)
        self._axes: np.ndarray | None = None  # graph coordinates: (dim, reduce_to); None: the full vectors
        self.patched = _patched is not None  # True: made by patching a graph of the previous index
        if _patched is not None:
            graph, self._patch, base = _patched
            self._graph, self._base, self._axes = SharedGraph(graph), weakref.ref(base), base._axes
            self._row_of_label, self._label_of_row = self._patch.row_of_label, self._patch.label_of_row
        elif settings.wants_hnsw(len(gallery)):
            self._label_of_row = np.arange(len(gallery), dtype=np.int64)
            self._row_of_label = self._label_of_row.copy()
            self._axes = principal_axes(self._vectors, settings.reduce_to)
            self._graph = SharedGraph(self._build_graph(settings.num_threads))

    @property
    def kind(self) -> str:
        return "hnsw" if self._graph is not None else "exact"

    @property
    def graph_dim(self) -> int | None:
        """The dims hnswlib searches in (`reduce_to`, or the gallery's when not below it); None: exact."""
        if self._graph is None:
            return None
        return self.gallery.dim if self._axes is None else self._axes.shape[1]

    @property
    def graph_bytes(self) -> int:
        """The live graph's size as hnswlib saves it (a standby is as large); 0 for exact search."""
        return 0 if self._graph is None else self._graph.size_bytes()

    @property
    def has_standby(self) -> bool:
        return self._standby is not None

    def _build_graph(self, threads: int) -> Any:
        s = self.settings
        rows = self._row_of_label[self._row_of_label >= 0]
        graph = build_graph(
            self._reduced(self._vectors[rows]),
            self._label_of_row[rows],
            len(self._row_of_label),
            GraphShape(s.m, s.ef_construction, max(s.ef, s.rerank)),
            threads,
        )
        return graph

    def _reduced(self, vectors: np.ndarray) -> np.ndarray:
        """`vectors` in the graph's coordinates (both graphs of a gallery, and every patch, share them)."""
        if self._axes is None:
            return vectors
        return np.ascontiguousarray(vectors @ self._axes)

    def updated(self, gallery: Gallery, settings: IndexSettings | None = None) -> GalleryIndex:
        """The index of `gallery`, built beside this one (which keeps serving meanwhile): this index's
        standby graph (else a copy of its graph) is patched when the settings are the same and the changes
        small, else a graph is built anew. The standby, if any, is used up either way."""
        settings = settings or self.settings
        standby, self._standby = self._standby, None  # freed before a new build: two graphs at most
        if (
            self._graph is None
            or settings != self.settings
            or gallery.dim != self.gallery.dim
            or not settings.wants_hnsw(len(gallery))
        ):
            return GalleryIndex(gallery, settings)
        changes = changes_between(self.gallery, gallery)
        tombstones = len(self._row_of_label) - len(self.gallery)
        if changes.count + tombstones > settings.patch_below * len(gallery):
            return GalleryIndex(gallery, settings)
        graph = standby if standby is not None else self._graph.copy()
        if graph is None:  # this index was retired (a newer one went live): nothing to patch
            return GalleryIndex(gallery, settings)
        patch = self._patch_for(gallery, changes)
        apply_patch(graph, patch, settings.patch_threads)
        return GalleryIndex(gallery, settings, _patched=(graph, patch, self))

    def _patch_for(self, gallery: Gallery, changes: Changes) -> Patch:
        """Removed and replaced rows' labels are deleted; new and replaced vectors get fresh labels."""
        kept = changes.old_row >= 0
        unchanged = kept & ~changes.changed
        replaced_old_rows = changes.old_row[kept & changes.changed]
        fresh = np.flatnonzero(changes.changed)
        labels = len(self._row_of_label) + np.arange(len(fresh), dtype=np.int64)
        label_of_row = np.full(len(gallery), -1, np.int64)
        label_of_row[unchanged] = self._label_of_row[changes.old_row[unchanged]]
        label_of_row[fresh] = labels
        row_of_label = np.full(len(self._row_of_label) + len(fresh), -1, np.int64)
        row_of_label[label_of_row] = np.arange(len(gallery))
        return Patch(
            deleted=self._label_of_row[np.concatenate([changes.removed_rows, replaced_old_rows])],
            labels=labels,
            vectors=self._reduced(np.ascontiguousarray(gallery.vectors[fresh], np.float32)),
            row_of_label=row_of_label,
            label_of_row=label_of_row,
        )

    def prepare_standby(self, previous: GalleryIndex | None) -> str:
        """Give this index, now live, its standby; returns how. When it was patched from `previous` (the
        index it replaced), that one's graph is retired and gets the same patch; else a second graph is built
        on one thread (the GIL is released while it builds: no copy stalls recognition)."""
        if self._graph is None or self._standby is not None:
            return "none"
        patch, self._patch = self._patch, None
        base = self._base() if self._base is not None else None
        if patch is not None and previous is not None and base is previous and previous._graph is not None:
            graph = previous._graph.retire()
            if graph is not None:
                apply_patch(graph, patch, self.settings.patch_threads)
                self._standby = graph
                return "caught up"
        self._standby = self._build_graph(threads=1)
        return "built"

    def set_ef(self, ef: int) -> None:
        """Search breadth of the HNSW graph (none for exact search); for measuring one graph at several ef."""
        if self._graph is not None:
            self._graph.set_ef(ef)

    def search(self, queries: np.ndarray, k: int = 2) -> list[list[SearchHit]]:
        """Top-k hits per query by exact cosine (HNSW only proposes candidates), best first."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.gallery.dim:
            raise GalleryError(f"query dim {queries.shape[1]} != gallery dim {self.gallery.dim}")
        n = len(self.gallery)
        if n == 0:
            return [[] for _ in queries]
        k = min(k, n)
        if self._graph is None:
            return self._exact(queries, k)
        labels = self._graph.knn(self._reduced(queries), min(n, max(k, self.settings.rerank)))
        if labels is None:  # retired: a newer index is live and this graph is being patched for it
            return self._exact(queries, k)
        results = []
        for query, row in zip(queries, self._row_of_label[labels], strict=True):
            exact = self._vectors[row] @ query
            order = np.argsort(-exact)[:k]
            results.append([SearchHit(int(row[i]), float(exact[i])) for i in order])
        return results

    def _exact(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        scores = queries @ self._vectors.T
        return [[SearchHit(int(i), float(row[i])) for i in top_k(row, k)] for row in scores]
