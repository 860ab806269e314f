"""hnswlib graphs for `GalleryIndex`: building one, patching one with a delta, and sharing one with readers.

A live graph is never modified: hnswlib's `add_items` is not safe beside `knn_query` on the same graph, and a
half-applied delta would be a mixed gallery. A delta is patched into a standby graph no reader uses; once
that goes live, the graph it replaced is retired (`SharedGraph.retire` waits for the searches already
running on it, later ones on the old index search exactly) and gets the same patch, becoming the next
standby. `add_items` releases the GIL for its work, so recognition keeps running meanwhile.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class GraphShape:
    """The hnswlib parameters a graph is built with (from `IndexSettings`)."""

    m: int
    ef_construction: int
    ef: int


def principal_axes(vectors: np.ndarray, dims: int, sample: int = 20_000) -> np.ndarray | None:
    """The `dims` directions that keep most of the gallery's energy (its top principal axes, uncentred: a
    projection onto them keeps inner products best), as a (dim, dims) matrix; None when `dims` is 0 or not
    below the vectors' own dim. Fitted on an evenly strided sample of at most `sample` rows, so one gallery
    always gets the same axes, and on the gallery itself, so it suits any embedder."""
    dim = vectors.shape[1]
    if dims <= 0 or dims >= dim or len(vectors) == 0:
        return None
    rows = vectors[:: max(1, len(vectors) // sample)]
    moment = np.zeros((dim, dim), np.float64)
    for start in range(0, len(rows), 2048):  # in blocks: a few MB at a time, not a float64 copy of the sample
        block = np.ascontiguousarray(rows[start : start + 2048], np.float32)
        moment += block.T @ block
    _, axes = np.linalg.eigh(moment)  # eigenvalues ascending
    return np.ascontiguousarray(axes[:, ::-1][:, :dims], np.float32)


def build_graph(
    vectors: np.ndarray, labels: np.ndarray, capacity: int, shape: GraphShape, threads: int
) -> Any:
    """A cosine graph of `vectors` under `labels`, with room for `capacity` labels."""
    import hnswlib

    graph = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    graph.init_index(
        max_elements=max(capacity, 1), ef_construction=shape.ef_construction, M=shape.m, random_seed=1
    )
    graph.add_items(vectors, labels, num_threads=threads)
    graph.set_ef(shape.ef)
    return graph


def copy_graph(graph: Any) -> Any:
    """A copy of an hnswlib graph, only when there is no standby: it holds the GIL while it loads (a save
    and load through memory-backed /dev/shm: 0.12 s at 20k x 512, the other threads stalled up to 66 ms;
    hnswlib's copy constructor holds it throughout)."""
    import hnswlib

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        path = str(Path(tmp) / "graph.bin")
        graph.save_index(path)
        copy = hnswlib.Index(space=graph.space, dim=graph.dim)
        copy.load_index(path, max_elements=graph.get_max_elements())
    copy.set_ef(graph.ef)
    return copy


@dataclass(frozen=True, slots=True)
class Patch:
    """One delta as graph operations, applied alike to the standby and later to the retired graph, so both
    end with the same labels: delete `deleted` labels, add `vectors` under `labels` (fresh ones). hnswlib
    labels are stable slots, not gallery rows, hence the maps the patch leaves (-1: none)."""

    deleted: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    row_of_label: np.ndarray
    label_of_row: np.ndarray


def apply_patch(graph: Any, patch: Patch, threads: int) -> None:
    """Deleted labels become tombstones (hnswlib's in-place update and slot reuse re-link the neighbours'
    neighbours: 15x slower than an insert here); new vectors are inserted under fresh labels."""
    for label in patch.deleted:
        graph.mark_deleted(int(label))
    if len(patch.labels):
        needed = graph.get_current_count() + len(patch.labels)
        if needed > graph.get_max_elements():
            graph.resize_index(needed)
        graph.add_items(patch.vectors, patch.labels, num_threads=threads)


class SharedGraph:
    """A live graph, searched by any number of readers until it is retired and handed to one writer."""

    def __init__(self, graph: Any) -> None:
        self._graph: Any = graph
        self._searching = 0
        self._changed = threading.Condition(threading.Lock())

    @property
    def retired(self) -> bool:
        return self._graph is None

    def set_ef(self, ef: int) -> None:
        """The search breadth of this graph (the device sets it once at build; benchmarks vary it)."""
        with self._changed:
            if self._graph is not None:
                self._graph.set_ef(ef)

    def size_bytes(self) -> int:
        """The graph's size as hnswlib saves it (vectors, links, labels; 0 once retired)."""
        with self._changed:
            return 0 if self._graph is None else int(self._graph.index_file_size())

    def knn(self, queries: np.ndarray, k: int) -> np.ndarray | None:
        """Candidate labels per query, or None once the graph is retired (the caller searches exactly)."""
        with self._changed:
            graph = self._graph
            if graph is None:
                return None
            self._searching += 1
        try:
            labels, _ = graph.knn_query(queries, k=k, num_threads=1)
            return np.asarray(labels)
        finally:
            with self._changed:
                self._searching -= 1
                self._changed.notify_all()

    def copy(self) -> Any | None:
        """A copy of the graph (see `copy_graph`), or None when it is retired."""
        with self._changed:
            graph = self._graph
            if graph is None:
                return None
            self._searching += 1
        try:
            return copy_graph(graph)
        finally:
            with self._changed:
                self._searching -= 1
                self._changed.notify_all()

    def retire(self) -> Any | None:
        """Take the graph away from readers: no new search starts on it, and this returns it (to be patched)
        once the searches running on it are done; None if it was retired already."""
        with self._changed:
            graph, self._graph = self._graph, None
            self._changed.wait_for(lambda: self._searching == 0)
        return graph
