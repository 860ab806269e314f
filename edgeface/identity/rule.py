"""Which threshold decides (docs/design.md §5): an explicit value, else the gallery's calibration, else the
card's.

Every entry point (daemon, `identify`, the demo, the benchmarks) asks `resolve_rule`, so the precedence
exists once. The result says where the threshold came from, for logs, `status` and `identify`'s output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from edgeface.errors import ModelError
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR, Calibration, ImpostorModel, TailShape
from edgeface.vision.modelcard import ModelCard

RuleSource = Literal["config", "gallery", "card"]


@dataclass(frozen=True, slots=True)
class CardFallback:
    """The embedder card's fallback for galleries too small to calibrate themselves.

    `location` is the highest mean impostor score (Fisher z) of the populations it was measured on, and
    `shape` the tail measured on the largest of them, so the fallback is the most conservative of them."""

    location: float
    shape: TailShape
    margin: float
    chosen_by: str

    def threshold_for(self, identities: int, target_fpir: float = DEFAULT_TARGET_FPIR) -> float:
        return ImpostorModel(self.location, self.shape).threshold_for(target_fpir, max(identities, 1))

    @classmethod
    def of_card(cls, card: ModelCard) -> CardFallback | None:
        """The card's fallback, parsed; None for a card that records none (detectors, new exports)."""
        return None if card.decision is None else cls.from_dict(card.decision, str(card.path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> CardFallback:
        try:
            decision = cls(
                location=float(raw["location"]),
                shape=TailShape.from_dict(raw["shape"]),
                margin=float(raw.get("margin", 0.0)),
                chosen_by=str(raw.get("chosen_by", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{where}: decision is malformed ({exc!r}); re-run models/recipe.py card-prior"
            ) from exc
        if not math.isfinite(decision.location) or len(decision.shape.quantiles) < 2:
            raise ModelError(f"{where}: decision needs a finite location and two tail quantiles")
        return decision


@dataclass(frozen=True, slots=True)
class MatchRule:
    """The threshold and margin in force, and where they came from."""

    threshold: float
    margin: float
    source: RuleSource
    detail: str

    def as_dict(self) -> dict[str, float | str]:
        return {
            "threshold": self.threshold,
            "margin": self.margin,
            "source": self.source,
            "detail": self.detail,
        }


def resolve_rule(
    *,
    threshold: float | None,
    margin: float | None,
    calibration: Calibration | None,
    card: CardFallback | None,
    identities: int,
) -> MatchRule:
    """Explicit values win; else the gallery's own calibration; else the card's fallback for this size."""
    if threshold is not None:
        chosen_margin = margin if margin is not None else _default_margin(calibration, card)
        return MatchRule(threshold, chosen_margin, "config", "set explicitly")
    if calibration is not None:
        chosen_margin = margin if margin is not None else calibration.margin
        detail = (
            f"calibrated on the gallery's {calibration.identities} identities for FPIR "
            f"{calibration.target_fpir:g} (estimated {calibration.est_fpir:.4f})"
        )
        return MatchRule(calibration.threshold, chosen_margin, "gallery", detail)
    if card is None:
        raise ModelError(
            "no threshold: the gallery is not calibrated and the embedder card records no decision"
        )
    chosen_margin = margin if margin is not None else card.margin
    detail = (
        f"the gallery is too small to calibrate ({identities} identities): the embedder card's "
        "conservative fallback applies"
    )
    return MatchRule(round(card.threshold_for(identities), 6), chosen_margin, "card", detail)


def _default_margin(calibration: Calibration | None, card: CardFallback | None) -> float:
    if calibration is not None:
        return calibration.margin
    return card.margin if card is not None else 0.0
