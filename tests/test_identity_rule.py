"""Which threshold decides (docs/design.md §5): explicit config, else the gallery's calibration, else the
card's."""

from __future__ import annotations

import json

import pytest

from edgeface.errors import ModelError
from edgeface.identity.calibration import Calibration
from edgeface.identity.rule import CardFallback, resolve_rule
from tests.conftest import MODELS

CALIBRATION = Calibration(
    threshold=0.52,
    margin=0.03,
    target_fpir=0.01,
    est_fpir=0.009,
    est_dir=0.95,
    n_impostor=4950,
    n_genuine=300,
    identities=100,
    method="test",
)


@pytest.fixture(scope="module")
def card() -> CardFallback:
    raw = json.loads((MODELS / "facerec128.int8.json").read_text())["decision"]
    return CardFallback.from_dict(raw, "facerec128.int8.json")


@pytest.mark.parametrize(
    ("threshold", "margin", "calibration", "expected"),
    [
        (0.7, None, CALIBRATION, (0.7, 0.03, "config")),  # explicit threshold, the calibration's margin
        (0.7, 0.2, CALIBRATION, (0.7, 0.2, "config")),
        (None, None, CALIBRATION, (0.52, 0.03, "gallery")),
        (None, 0.1, CALIBRATION, (0.52, 0.1, "gallery")),  # an explicit margin still wins
    ],
)
def test_precedence(threshold, margin, calibration, expected, card: CardFallback) -> None:
    rule = resolve_rule(
        threshold=threshold, margin=margin, calibration=calibration, card=card, identities=100
    )
    assert (rule.threshold, rule.margin, rule.source) == expected


def test_the_card_decides_an_uncalibrated_gallery_and_grows_stricter_with_size(card: CardFallback) -> None:
    small = resolve_rule(threshold=None, margin=None, calibration=None, card=card, identities=2)
    large = resolve_rule(threshold=None, margin=None, calibration=None, card=card, identities=2000)
    assert small.source == large.source == "card" and small.margin == card.margin
    assert small.threshold == round(card.threshold_for(2), 6)
    assert -1.0 < small.threshold < large.threshold < 1.0  # more identities, more chances of a false match
    assert "2 identities" in small.detail


def test_no_threshold_anywhere_is_an_error() -> None:
    with pytest.raises(ModelError, match="no threshold"):
        resolve_rule(threshold=None, margin=None, calibration=None, card=None, identities=5)


def test_explicit_threshold_without_calibration_or_card_has_no_margin() -> None:
    rule = resolve_rule(threshold=0.6, margin=None, calibration=None, card=None, identities=5)
    assert (rule.threshold, rule.margin, rule.source) == (0.6, 0.0, "config")
    assert rule.as_dict() == {"threshold": 0.6, "margin": 0.0, "source": "config", "detail": "set explicitly"}


@pytest.mark.parametrize(
    "raw",
    [{}, {"location": "x", "shape": {}}, {"location": float("nan"), "shape": {"between": 0, "within": 0}}],
)
def test_a_malformed_card_decision_is_a_model_error(raw: dict) -> None:
    with pytest.raises(ModelError, match=r"card\.json: decision"):
        CardFallback.from_dict(raw, "card.json")
