"""Evaluation maths on synthetic scores with known answers: ROC, threshold at FAR, splits, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from edgeface.server.evaluation import near_duplicates, roc, split_80_20, threshold_at_far


def test_separable_scores_give_a_perfect_roc() -> None:
    result = roc(np.array([0.8, 0.9, 0.95]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert result["auc"] == pytest.approx(1.0)
    assert result["eer"] == pytest.approx(0.0)
    assert result["tar_at_far_0.01"] == 1.0
    assert (result["n_genuine"], result["n_impostor"]) == (3, 4)
    far, tar = result["_curve"]
    assert far[0] == tar[0] == 0.0 and far[-1] == tar[-1] == 1.0


def test_identical_distributions_give_chance() -> None:
    scores = np.linspace(0, 1, 101)
    result = roc(scores, scores)
    assert result["auc"] == pytest.approx(0.5, abs=0.01)
    assert result["eer"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("far", "accepted"), [(0.0, 0), (0.1, 1), (0.25, 2), (0.5, 5), (1.0, 10)])
def test_threshold_at_far_accepts_at_most_that_share(far: float, accepted: int) -> None:
    impostor = np.arange(10) / 10.0
    threshold = threshold_at_far(impostor, far)
    assert int((impostor >= threshold).sum()) == accepted


def test_split_is_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(4), 10)
    gallery, probes = split_80_20(labels, seed=3)
    assert np.array_equal(gallery, ~probes)
    assert [int(gallery[labels == k].sum()) for k in range(4)] == [8, 8, 8, 8]
    assert np.array_equal(split_80_20(labels, seed=3)[0], gallery)
    assert not np.array_equal(split_80_20(labels, seed=4)[0], gallery)


def test_near_duplicates_only_within_an_identity() -> None:
    hashes = [0b1111, 0b1110, 0b1111, 0xFFFF0000]
    labels = np.array([0, 0, 1, 0])
    assert near_duplicates(hashes, labels, max_bits=1).tolist() == [False, True, False, False]
