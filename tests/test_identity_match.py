"""The decision rule (docs/design.md §5, edgeface/identity/match.py) at its edges: threshold and margin are
both inclusive, a track's embeddings are averaged before the search, and every decision carries its evidence.

`test_gallery_index_match.py` shows the rule on a gallery where the answer is clear; here the boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex
from edgeface.identity.match import decide
from edgeface.types import Identity, Match
from tests.factories import MODEL, rule_of

E = np.eye(4, dtype=np.float32)


def index_of(*rows: np.ndarray) -> GalleryIndex:
    vectors = np.stack(rows).astype(np.float32)
    ids = tuple(f"p{i}" for i in range(len(rows)))
    return GalleryIndex(Gallery(ids, tuple(i.upper() for i in ids), (1,) * len(rows), vectors, MODEL))


def test_a_score_equal_to_the_threshold_matches() -> None:
    index = index_of(E[0], E[1])
    assert decide(index, rule_of(1.0), E[0]) == Match("match", Identity("p0", "P0"), 1.0, 1.0, 1.0)
    assert decide(index, rule_of(np.nextafter(1.0, 2.0)), E[0]).decision == "unknown"


def test_a_margin_equal_to_the_required_margin_matches() -> None:
    index = index_of(E[0], E[1])  # best 1.0, runner-up 0.0: margin exactly 1.0
    assert decide(index, rule_of(0.5, 1.0), E[0]).decision == "match"
    unknown = decide(index, rule_of(0.5, np.nextafter(1.0, 2.0)), E[0])
    assert unknown == Match("unknown", None, 1.0, 1.0, 0.5)  # the evidence is kept for the event


def test_with_one_identity_the_runner_up_counts_as_minus_one() -> None:
    match = decide(index_of(E[0]), rule_of(0.5, 1.9), E[0])
    assert match.decision == "match" and match.margin == pytest.approx(2.0)


def test_a_tracks_embeddings_are_averaged_then_searched() -> None:
    """Each face alone is 45 degrees from p0 (cosine 0.707); their mean points at it (cosine 1)."""
    faces = np.stack([E[0] + E[1], E[0] - E[1]]) / np.sqrt(2)
    index = index_of(E[0], E[2])
    rule = rule_of(0.9)
    assert all(decide(index, rule, face).decision == "unknown" for face in faces)
    match = decide(index, rule, faces)
    assert match.decision == "match" and match.identity == Identity("p0", "P0")
    assert match.score == pytest.approx(1.0, abs=1e-6)


def test_the_mean_is_normalised_so_scores_stay_cosines() -> None:
    faces = np.stack([E[0], E[0] + 0.5 * E[1]])  # unnormalised input, mean of length > 1
    match = decide(index_of(E[0], E[1]), rule_of(0.0), faces * 3)
    mean = (faces * 3).mean(0)
    assert match.score == pytest.approx(float(mean[0] / np.linalg.norm(mean)), abs=1e-6)


def test_unknown_carries_the_best_score_and_margin_and_an_empty_gallery_zeros() -> None:
    query = (0.6 * E[0] + 0.8 * E[1]).astype(np.float32)
    match = decide(index_of(E[0], E[1]), rule_of(0.9), query)
    assert match.decision == "unknown" and match.identity is None and match.threshold == 0.9
    assert match.score == pytest.approx(0.8) and match.margin == pytest.approx(0.2)
    empty = GalleryIndex(Gallery.empty(4, MODEL))
    assert decide(empty, rule_of(0.3, 0.1), query) == Match("unknown", None, 0.0, 0.0, 0.3)
