"""`GoLive` (edgeface/identity/live.py): the one way a gallery goes live, its index and rule together.

The concurrency tests swap galleries many times while another thread decides. Each gallery version v holds
the identity `v{v}-target` at the query's own vector and is judged by a threshold unique to v, so every
decision shows which index it searched (the identity it found) and which rule judged it (the threshold in
the match); they must always name the same version.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest

from edgeface.errors import GalleryError
from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.live import GoLive
from edgeface.identity.rule import MatchRule
from edgeface.pipeline.match_settings import MatchSettings
from edgeface.pipeline.recognize import Recognition, Recognizer
from edgeface.types import Frame, Match
from edgeface.vision.quality_settings import QualitySettings
from tests.factories import MODEL, ScriptedEncoder, make_detection, textured, unit_vectors

DIM = 16
QUERY = unit_vectors(1, DIM, seed=7)[0]
VERSIONS = 60


@pytest.fixture(autouse=True)
def switch_often():
    """Let the threads interleave every few microseconds, so a torn read would be caught."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def threshold_of(version: int) -> float:
    return round(0.5 + version / 1000, 6)


def rule_by_version(gallery: Gallery) -> MatchRule:
    return MatchRule(threshold_of(gallery.version), 0.0, "config", f"for v{gallery.version}")


def gallery_v(version: int, others: int = 30) -> Gallery:
    vectors = np.vstack([QUERY, unit_vectors(others, DIM, seed=version)]).astype(np.float32)
    ids = (f"v{version}-target", *(f"v{version}-p{i}" for i in range(others)))
    return Gallery(ids, ids, (1,) * len(ids), vectors, MODEL, version)


def version_of(match: Match) -> int:
    assert match.identity is not None, match
    return int(match.identity.id.split("-")[0][1:])


def version_judged(match: Match) -> int:
    return round((match.threshold - 0.5) * 1000)


@dataclass
class Swapper:
    """Publishes each gallery once the reader has decided at least once on the one before."""

    live: GoLive
    galleries: list[Gallery]
    done: threading.Event
    decided: Callable[[], int]

    def run(self) -> None:
        try:
            for gallery in self.galleries:
                seen = self.decided()
                while self.decided() == seen:
                    time.sleep(0)
                self.live.publish(gallery)
        finally:
            self.done.set()


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_no_decision_is_judged_by_one_gallery_and_searched_in_another(kind: str) -> None:
    live = GoLive(gallery_v(1), rule_by_version, IndexSettings(kind=kind))
    done = threading.Event()
    seen: list[tuple[int, int, int]] = []  # (index version, rule version, value version)
    swapper = Swapper(live, [gallery_v(v) for v in range(2, VERSIONS + 1)], done, seen.__len__)
    thread = threading.Thread(target=swapper.run)
    thread.start()
    while not done.is_set() or len(seen) < 50:
        current = live.current
        match = current.decide(QUERY)
        seen.append((version_of(match), version_judged(match), current.version))
    thread.join()
    last = live.current.decide(QUERY)
    seen.append((version_of(last), version_judged(last), live.current.version))
    mixed = [s for s in seen if len(set(s)) != 1]
    assert not mixed, f"{len(mixed)} of {len(seen)} decisions mixed versions, e.g. {mixed[:3]}"
    assert seen[-1][0] == VERSIONS and len({s[0] for s in seen}) > VERSIONS // 2  # swaps happened meanwhile


def test_the_recognizer_decides_with_the_index_and_rule_of_one_gallery_while_galleries_swap() -> None:
    # A new track every frame (frames 1 s apart outlive the tracker's 0.4 s), decided on its first face.
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], QUERY)
    live = GoLive(gallery_v(1), rule_by_version, IndexSettings(kind="exact"))
    recognizer = Recognizer(encoder.detector, encoder, live, QualitySettings(), MatchSettings(min_frames=1))
    image = textured()
    done = threading.Event()
    decisions: list[Recognition] = []
    galleries = [gallery_v(v) for v in range(2, VERSIONS + 1)]
    thread = threading.Thread(target=Swapper(live, galleries, done, decisions.__len__).run)
    thread.start()
    seq = 0
    while not done.is_set() or len(decisions) < 50:
        decisions.extend(recognizer.process(Frame(image, float(seq), seq)))
        seq += 1
    thread.join()
    mixed = [d for d in decisions if not version_of(d.match) == version_judged(d.match) == d.gallery_version]
    assert not mixed, f"{len(mixed)} of {len(decisions)} decisions mixed versions"
    assert len({d.gallery_version for d in decisions}) > VERSIONS // 2


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_gallery_that_cannot_go_live_leaves_the_live_one_whole(kind: str) -> None:
    live = GoLive(gallery_v(1), rule_by_version, IndexSettings(kind=kind))
    before = live.current

    def refuse(gallery: Gallery) -> MatchRule:
        raise GalleryError("no rule for this gallery")

    with pytest.raises(GalleryError, match="no rule"):
        live.publish(gallery_v(2), refuse)
    assert live.current is before
    assert live.wait_for_standby() and before.index.has_standby == (kind == "hnsw")  # made again if used up
    later = live.publish(gallery_v(3))  # the rule source it had is kept, not the refused one
    assert later.rule.threshold == threshold_of(3) and live.current is later


def test_new_settings_rebuild_the_index_and_the_same_gallery_can_get_a_new_rule() -> None:
    live = GoLive(gallery_v(1), rule_by_version, IndexSettings(kind="exact"))
    hnsw = live.publish(gallery_v(1), settings=IndexSettings(kind="hnsw"))
    assert hnsw.index.kind == "hnsw" and hnsw.gallery is live.current.gallery
    strict = live.publish(gallery_v(1), lambda g: MatchRule(0.99, 0.0, "config", "stricter"))
    assert strict.rule.threshold == 0.99 and strict.index.kind == "hnsw"


# --- live deltas through the standby graph -------------------------------------------------------------------

WEAK = IndexSettings(kind="hnsw", m=8, ef_construction=40, ef=16, rerank=2, num_threads=1, patch_below=0.5)


def churn(gallery: Gallery, seed: int, version: int, k: int = 12) -> tuple[Gallery, set[str]]:
    """`k` identities removed, `k` replaced by new vectors and `k` added."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(gallery), 2 * k, replace=False)
    removed = {gallery.ids[i] for i in picked[:k]}
    fresh = unit_vectors(2 * k, DIM, seed=seed + 500)
    vectors = gallery.vectors.copy()
    vectors[picked[k:]] = fresh[:k]
    keep = [r for r, i in enumerate(gallery.ids) if i not in removed]
    ids = tuple(gallery.ids[r] for r in keep) + tuple(f"v{version}-new{i}" for i in range(k))
    stacked = np.vstack([vectors[keep], fresh[k:]]).astype(np.float32)
    return Gallery(ids, ids, (1,) * len(ids), stacked, MODEL, version), removed


def recall_at_1(live: GoLive, queries: np.ndarray) -> float:
    gallery = live.current.gallery
    truth = np.argmax(queries @ gallery.vectors.T, axis=1)
    return float(np.mean([hits[0].index for hits in live.current.index.search(queries, k=1)] == truth))


# the graph over the full vectors, and over the gallery's principal axes (the patches keep the first graph's)
PROJECTED = replace(WEAK, reduce_to=DIM // 2)


@pytest.mark.parametrize("settings", [WEAK, PROJECTED], ids=["full", "projected"])
def test_a_chain_of_deltas_through_the_standby_leaves_both_graphs_answering_like_a_rebuild(
    settings: IndexSettings,
) -> None:
    gallery = gallery_v(1, others=1500)
    live = GoLive(gallery, rule_by_version, settings)
    assert live.wait_for_standby() and live.current.index.has_standby
    queries = unit_vectors(300, DIM, seed=77)  # random: close calls, where a worse graph would miss
    removed: set[str] = set()
    for version in range(2, 7):
        gallery, gone = churn(gallery, seed=version, version=version)
        removed = (removed | gone) - set(gallery.ids)
        went = live.publish(gallery)
        assert went.index.patched and live.wait_for_standby() and went.index.has_standby
        assert went.index.graph_dim == (settings.reduce_to if 0 < settings.reduce_to < DIM else DIM)
        rebuilt = GalleryIndex(gallery, settings)
        truth = np.argmax(queries @ gallery.vectors.T, axis=1)
        rebuilt_recall = float(np.mean([h[0].index for h in rebuilt.search(queries, k=1)] == truth))
        # the live graph, then the standby: the same gallery published again swaps to the standby graph
        for graph in ("live", "standby"):
            if graph == "standby":
                assert live.publish(gallery).index.patched and live.wait_for_standby()
            assert recall_at_1(live, queries) >= rebuilt_recall - 0.03, (version, graph)
            found = live.current.index.search(gallery.vectors, k=5)
            assert [hits[0].index for hits in found] == list(range(len(gallery)))
            assert not {gallery.ids[h.index] for hits in found for h in hits} & removed


def test_the_published_graph_is_not_modified_until_a_newer_one_is_live() -> None:
    gallery = gallery_v(1, others=800)
    next_gallery, removed = churn(gallery, seed=3, version=2)
    live = GoLive(gallery, rule_by_version, WEAK)
    live.wait_for_standby()
    published = live.current.index._graph._graph  # type: ignore[union-attr]  # the raw hnswlib graph
    gone = np.stack([gallery.vectors[gallery.ids.index(i)] for i in sorted(removed)])

    def state() -> tuple[int, int, list[int], list[list[int]]]:
        labels, _ = published.knn_query(gone, k=1)  # removed rows still find themselves in the old graph
        return (
            published.get_current_count(),
            published.get_max_elements(),
            sorted(published.get_ids_list()),
            labels.tolist(),
        )

    before = state()
    seen: list[tuple[int, int, list[int], list[list[int]]]] = []

    def rule_watching_the_graph(
        g: Gallery,
    ) -> MatchRule:  # runs after the delta is patched in, before the swap
        seen.append(state())
        return rule_by_version(g)

    went = live.publish(next_gallery, rule_watching_the_graph)
    assert went.index.patched and seen == [before]
    live.wait_for_standby()  # now the replaced graph has caught up: it is the next standby
    assert published.get_current_count() == before[0] + 2 * 12 and state()[3] != before[3]
