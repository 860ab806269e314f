"""The signed `decision` evidence (edgeface/sync/signed_calibration.py): strict parsing and the calibration round trip.

`test_sync_bounds.py` refuses bad evidence inside signed manifests; here the parser's edges (inclusive ranges,
`est_dir` null, ints as numbers, bools never) and what a device records from a manifest it applied.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgeface.identity.calibration import Calibration
from edgeface.sync.signed_calibration import (
    CALIBRATION_METHOD,
    MAX_COUNT,
    SignedCalibration,
    calibration_of,
    evidence_of,
    parse_decision,
)

GOOD: dict[str, Any] = {
    "threshold": 0.42,
    "margin": 0.05,
    "target_fpir": 0.01,
    "est_fpir": 0.0093,
    "est_dir": 0.97,
    "n_impostor": 4950,
    "n_genuine": 100,
}


def test_a_good_object_parses_to_the_same_values() -> None:
    evidence = parse_decision(GOOD)
    assert evidence == SignedCalibration(**GOOD) and evidence.as_dict() == GOOD


@pytest.mark.parametrize(
    "edge",
    [
        {"threshold": -1.0},
        {"threshold": 1.0},
        {"margin": 0.0},
        {"margin": 2.0},
        {"target_fpir": 0.0},
        {"target_fpir": 1.0},
        {"est_fpir": 0},
        {"est_dir": None},
        {"est_dir": 1},
        {"n_impostor": 0},
        {"n_genuine": MAX_COUNT},
    ],
    ids=lambda edge: f"{next(iter(edge))}={next(iter(edge.values()))}",
)
def test_every_range_is_inclusive_and_est_dir_may_be_null(edge: dict) -> None:
    evidence = parse_decision(GOOD | edge)
    ((key, value),) = edge.items()
    assert getattr(evidence, key) == value


def test_numbers_given_as_integers_are_stored_as_floats() -> None:
    evidence = parse_decision(GOOD | {"threshold": 1, "est_dir": 0})
    assert isinstance(evidence.threshold, float) and isinstance(evidence.est_dir, float)
    assert isinstance(evidence.n_impostor, int)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": -1.000001}, r"decision\.threshold must be finite and in \[-1, 1\]"),
        ({"margin": 2.000001}, r"decision\.margin must be finite and in \[0, 2\]"),
        ({"est_fpir": float("inf")}, r"decision\.est_fpir must be finite"),
        ({"threshold": None}, r"decision\.threshold must be a number, got None"),  # only est_dir is nullable
        ({"threshold": True}, r"decision\.threshold must be a number, got True"),
        ({"threshold": "0.4"}, r"decision\.threshold must be a number"),
        ({"n_genuine": MAX_COUNT + 1}, r"decision\.n_genuine must be an integer >= 0"),
        ({"n_genuine": False}, r"decision\.n_genuine must be an integer >= 0, got False"),
        ({"n_impostor": 10.0}, r"decision\.n_impostor must be an integer >= 0"),
    ],
)
def test_values_out_of_range_or_of_the_wrong_type_are_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_decision(GOOD | change)
    with pytest.raises(ValueError, match=message):  # built directly, the same checks apply
        SignedCalibration(**(GOOD | change))


def test_missing_and_unexpected_keys_are_listed_safely() -> None:
    doc = {k: v for k, v in GOOD.items() if k != "margin"} | {"evil\x1b[2J": 1}
    with pytest.raises(ValueError) as caught:
        parse_decision(doc)
    message = str(caught.value)
    assert message.startswith("decision keys: missing ['margin'], unexpected ") and "\x1b" not in message
    with pytest.raises(ValueError, match="decision must be an object, got list"):
        parse_decision([GOOD])


def test_a_calibration_travels_through_the_manifest_and_is_recorded_as_applied() -> None:
    calibration = Calibration(0.42, 0.05, 0.01, 0.0093, None, 4950, 0, 100, "Fisher-z empirical tail")
    evidence = evidence_of(calibration)
    assert evidence.as_dict() == {
        k: v for k, v in calibration.as_dict().items() if k not in ("identities", "method")
    }
    recorded = calibration_of(parse_decision(evidence.as_dict()), identities=100)
    assert recorded == Calibration(0.42, 0.05, 0.01, 0.0093, None, 4950, 0, 100, CALIBRATION_METHOD)


def test_a_calibration_a_device_would_refuse_cannot_be_put_into_a_manifest() -> None:
    with pytest.raises(ValueError, match=r"decision\.threshold"):
        evidence_of(Calibration(1.5, 0.0, 0.01, 0.01, None, 1, 0, 2, "broken"))
