"""Open-set calibration (docs/design.md §5): the threshold chosen for a target FPIR, on galleries whose answer
is known.

Two kinds of known answer: galleries built so every impostor score is one exact cosine (the threshold then
follows in closed form from the location, the tail shape and the location's uncertainty), and a large
random population whose false-positive identification rate is measured on fresh strangers.
`test_identity_rule.py` tests how a `Calibration` takes precedence; `test_server_openset.py` the evaluation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeface.identity.calibration import (
    CONFIDENCE_Z,
    Calibration,
    ImpostorModel,
    TailShape,
    calibrate,
    genuine_scores,
    measure_prior,
    per_identity_rate,
    tail_quantiles,
)
from edgeface.util.vectors import l2_normalize

PRIOR = TailShape(0.12, 0.05, ((0.1, 0.18), (0.01, 0.33), (0.001, 0.44)))


def equicorrelated(identities: int, photos: int, cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """`photos` identical photos per identity; every two identities' vectors at exactly `cosine`."""
    basis = np.eye(identities + 1)
    vectors = math.sqrt(cosine) * basis[0] + math.sqrt(1 - cosine) * basis[1:]
    return np.repeat(vectors, photos, axis=0), np.repeat(np.arange(identities), photos)


def random_population(
    identities: int, photos: int, dim: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random identity centres (impostor cosines spread around 0) and noisy photos of each."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((identities, dim)))
    noise = 0.6 * rng.standard_normal((identities * photos, dim)) / math.sqrt(dim)
    return l2_normalize(np.repeat(centres, photos, axis=0) + noise), np.repeat(np.arange(identities), photos)


# --- the pieces -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("identities", [1, 2, 10, 1000])
def test_per_identity_rate_compounds_to_the_target_over_all_identities(identities: int) -> None:
    rate = per_identity_rate(0.01, identities)
    assert (1 - rate) ** identities == pytest.approx(0.99, rel=1e-12)
    assert rate <= 0.01 + 1e-15
    assert per_identity_rate(0.01, 0) == pytest.approx(0.01)  # an empty gallery counts as one


def test_tail_offsets_interpolate_in_log_rate_and_extrapolate_beyond_the_data() -> None:
    shape = TailShape(0.0, 0.0, ((0.1, 0.2), (0.01, 0.4)))
    assert shape.offset_at(0.1) == pytest.approx(0.2)
    assert shape.offset_at(0.01) == pytest.approx(0.4)
    assert shape.offset_at(math.sqrt(0.1 * 0.01)) == pytest.approx(0.3)  # halfway in log rate
    assert shape.offset_at(0.001) == pytest.approx(0.6)  # the last segment's slope, continued
    assert shape.offset_at(1e-6) == pytest.approx(1.2)
    assert shape.offset_at(0.5) == pytest.approx(0.2)  # above the first quantile: held at its offset


def test_tail_shape_and_calibration_round_trip_through_dicts() -> None:
    assert TailShape.from_dict(PRIOR.as_dict()) == PRIOR
    calibration = Calibration(0.41, 0.02, 0.01, 0.0093, None, 4950, 0, 100, "m")
    assert Calibration.from_dict(calibration.as_dict()) == calibration
    old = {k: v for k, v in calibration.as_dict().items() if k not in ("identities", "method")}
    assert Calibration.from_dict(old) == Calibration(0.41, 0.02, 0.01, 0.0093, None, 4950, 0, 0, "")


@pytest.mark.parametrize("identities", [1, 5, 200])
def test_fpir_at_inverts_threshold_for(identities: int) -> None:
    model = ImpostorModel(0.4, PRIOR)
    for target in (0.001, 0.01, 0.1):
        threshold = model.threshold_for(target, identities)
        rate = per_identity_rate(target, identities)
        assert threshold == pytest.approx(math.tanh(0.4 + PRIOR.offset_at(rate)))
        assert model.fpir_at(threshold, identities) == pytest.approx(target, rel=1e-6)


def test_tail_quantiles_stop_where_fewer_than_ten_scores_lie_beyond() -> None:
    scores = np.arange(1000, dtype=np.float64)
    quantiles = tail_quantiles(scores, location=500.0)
    assert [r for r, _ in quantiles] == pytest.approx([0.1, 10**-1.5, 0.01])  # 0.01 x 1000 = 10 beyond
    assert [o for _, o in quantiles] == pytest.approx(
        [np.quantile(scores, 1 - r) - 500 for r, _ in quantiles]
    )
    assert tail_quantiles(scores[:99], 0.0) == ()  # 0.1 x 99 < 10


def test_genuine_scores_are_leave_one_out_against_the_rest_of_the_identity() -> None:
    a, b, x, y, z, lone = l2_normalize(np.random.default_rng(3).standard_normal((6, 16)))
    embeddings = np.stack([a, b, lone, x, y, z])
    labels = np.array([0, 0, 1, 2, 2, 2])
    expected = [a @ b, b @ a, x @ l2_normalize(y + z), y @ l2_normalize(x + z), z @ l2_normalize(x + y)]
    np.testing.assert_allclose(genuine_scores(embeddings, labels, 3), expected, atol=1e-6)


# --- thresholds with a known answer ---------------------------------------------------------------------
@pytest.mark.parametrize("cosine", [0.3, 0.6])
def test_a_gallery_with_enough_pairs_uses_its_own_tail_and_its_own_location(cosine: float) -> None:
    """12 identities x 3 photos: 396 impostor scores, all `cosine`: no spread, no uncertainty."""
    embeddings, labels = equicorrelated(12, 3, cosine)
    for prior in (None, PRIOR):  # the gallery's own shape is trusted over the card's prior
        calibration = calibrate(embeddings, labels, 0.01, margin=0.03, prior=prior)
        assert calibration is not None
        assert calibration.threshold == pytest.approx(cosine, abs=1e-6)
        assert "shape from the gallery" in calibration.method
        assert (calibration.identities, calibration.n_impostor, calibration.n_genuine) == (12, 36 * 11, 36)
        assert calibration.est_dir == 1.0 and calibration.margin == 0.03 and calibration.target_fpir == 0.01


@pytest.mark.parametrize(("identities", "photos"), [(2, 1), (4, 2), (5, 3)])
def test_a_small_gallery_takes_the_priors_shape_and_pays_for_its_uncertain_location(
    identities: int, photos: int
) -> None:
    cosine = 0.35
    embeddings, labels = equicorrelated(identities, photos, cosine)
    calibration = calibrate(embeddings, labels, 0.01, prior=PRIOR)
    assert calibration is not None and "shape from the card's prior" in calibration.method
    pairs = identities * (identities - 1) / 2
    location_se = math.sqrt((PRIOR.between**2 + PRIOR.within**2 * identities / len(labels)) / pairs)
    offset = PRIOR.offset_at(per_identity_rate(0.01, identities))
    expected = math.tanh(math.atanh(cosine) + CONFIDENCE_Z * location_se + offset)
    assert calibration.threshold == pytest.approx(expected, abs=1e-6)
    assert calibration.est_fpir < 0.01  # the threshold sits on the location's upper bound


def test_strangers_that_look_alike_get_a_higher_threshold() -> None:
    low = calibrate(*equicorrelated(4, 2, 0.2), prior=PRIOR)
    high = calibrate(*equicorrelated(4, 2, 0.5), prior=PRIOR)
    assert low is not None and high is not None
    # Same shape and same uncertainty: the Fisher-z offset above the location is the same.
    assert math.atanh(high.threshold) - math.atanh(0.5) == pytest.approx(
        math.atanh(low.threshold) - math.atanh(0.2)
    )
    assert high.threshold > low.threshold


def test_a_stricter_target_gives_a_higher_threshold() -> None:
    embeddings, labels = random_population(40, 4, seed=1)
    thresholds = [calibrate(embeddings, labels, fpir).threshold for fpir in (0.1, 0.01, 0.001)]  # type: ignore[union-attr]
    assert thresholds == sorted(thresholds)
    assert len(set(thresholds)) == 3


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_the_chosen_threshold_holds_the_fpir_on_fresh_strangers(target: float) -> None:
    """200 random identities, 5 photos each; 50,000 new random faces play the strangers at the door."""
    embeddings, labels = random_population(200, 5, seed=0)
    calibration = calibrate(embeddings, labels, target)
    assert calibration is not None and "shape from the gallery" in calibration.method
    vectors = l2_normalize(np.stack([embeddings[labels == i].mean(0) for i in range(200)]))
    strangers = l2_normalize(np.random.default_rng(100).standard_normal((50_000, 64)))
    measured = float(((strangers @ vectors.T).max(1) >= calibration.threshold).mean())
    assert target / 2 <= measured <= target * 1.5, (calibration.threshold, measured)
    assert 0.8 * target <= calibration.est_fpir <= target
    assert calibration.est_dir == 1.0  # photos of a person are far closer than any stranger
    assert (calibration.n_impostor, calibration.n_genuine) == (1000 * 199, 1000)


# --- edge cases -----------------------------------------------------------------------------------------
def test_nobody_with_two_photos_has_no_genuine_estimate() -> None:
    calibration = calibrate(*equicorrelated(12, 1, 0.3), prior=PRIOR)
    assert calibration is not None
    assert calibration.est_dir is None and calibration.n_genuine == 0 and calibration.n_impostor == 12 * 11
    assert "shape from the card's prior" in calibration.method  # 132 scores: one tail quantile only


def test_only_people_with_two_photos_give_genuine_scores() -> None:
    embeddings, labels = equicorrelated(12, 1, 0.3)
    embeddings, labels = np.vstack([embeddings, embeddings[:1]]), np.append(labels, 0)
    calibration = calibrate(embeddings, labels, prior=PRIOR)
    assert calibration is not None and calibration.n_genuine == 2 and calibration.est_dir == 1.0


@pytest.mark.parametrize("prior", [None, PRIOR])
def test_fewer_than_two_identities_cannot_be_calibrated(prior: TailShape | None) -> None:
    assert calibrate(*equicorrelated(1, 4, 0.3), prior=prior) is None
    assert calibrate(np.zeros((0, 8)), np.zeros(0, np.int64), prior=prior) is None


def test_without_a_prior_a_gallery_below_ten_identities_is_not_calibrated() -> None:
    assert calibrate(*equicorrelated(9, 40, 0.3)) is None  # 72 identity pairs < 90
    assert calibrate(*equicorrelated(9, 40, 0.3), prior=PRIOR) is not None


@pytest.mark.parametrize("photos", [1, 3])
def test_without_a_prior_too_few_scores_for_a_tail_is_not_calibrated(photos: int) -> None:
    """10 identities x 1 or 3 photos: 90 or 270 impostor scores, one tail quantile at most: no threshold
    (this raised IndexError before), while 4 photos (360 scores, two quantiles) are enough."""
    assert calibrate(*equicorrelated(10, photos, 0.3)) is None
    assert calibrate(*equicorrelated(10, 4, 0.3)) is not None


def test_measure_prior_of_a_constant_population_is_flat() -> None:
    shape = measure_prior(*equicorrelated(12, 3, 0.4))
    assert shape.between == pytest.approx(0.0, abs=1e-6) and shape.within == pytest.approx(0.0, abs=1e-6)
    assert len(shape.quantiles) == 2 and all(
        offset == pytest.approx(0.0, abs=1e-9) for _, offset in shape.quantiles
    )
