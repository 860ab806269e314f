"""The optional `decision` object of a signed manifest (docs/design.md §5): the gallery's calibrated threshold
and the evidence it was chosen on. Parsed strictly: every key present, no other key, every number in range.
`est_dir` is null when no identity had two photos to estimate it from.

The server puts a gallery's `Calibration` here (`evidence_of`); a device stores it back as the applied
gallery's calibration (`calibration_of`), so its decision threshold is the one chosen on that gallery."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from edgeface.identity.calibration import Calibration
from edgeface.util.logsafe import printable

MAX_COUNT = 2**53 - 1
_RANGES = {  # name: (low, high), both inclusive
    "threshold": (-1.0, 1.0),
    "margin": (0.0, 2.0),
    "target_fpir": (0.0, 1.0),
    "est_fpir": (0.0, 1.0),
    "est_dir": (0.0, 1.0),
}
_COUNTS = ("n_impostor", "n_genuine")
_NULLABLE = frozenset({"est_dir"})
CALIBRATION_METHOD = "signed manifest"


@dataclass(frozen=True, slots=True)
class SignedCalibration:
    threshold: float
    margin: float
    target_fpir: float
    est_fpir: float
    est_dir: float | None
    n_impostor: int
    n_genuine: int

    def __post_init__(self) -> None:
        for key, value in _checked(asdict(self)).items():  # same checks whether built here or parsed
            object.__setattr__(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(doc: dict[str, object], key: str) -> float | None:
    low, high = _RANGES[key]
    value = doc[key]
    if value is None and key in _NULLABLE:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"decision.{key} must be a number, got {printable(repr(value), 60)}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"decision.{key} must be finite and in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _count(doc: dict[str, object], key: str) -> int:
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"decision.{key} must be an integer >= 0, got {printable(repr(value), 60)}")
    return value


def _checked(doc: object) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"decision must be an object, got {type(doc).__name__}")
    expected = set(_RANGES) | set(_COUNTS)
    if set(doc) != expected:
        missing = sorted(expected - set(doc))
        extra = sorted(printable(k, 40) for k in set(doc) - expected)
        raise ValueError(f"decision keys: missing {missing}, unexpected {printable(extra, 120)}")
    numbers = {key: _number(doc, key) for key in _RANGES}
    counts = {key: _count(doc, key) for key in _COUNTS}
    return numbers | counts


def parse_decision(doc: object) -> SignedCalibration:
    """A `SignedCalibration` from a JSON object; `ValueError` names the first problem."""
    return SignedCalibration(**_checked(doc))


def evidence_of(calibration: Calibration) -> SignedCalibration:
    """What a manifest carries of a gallery's calibration."""
    return SignedCalibration(**{f.name: getattr(calibration, f.name) for f in fields(SignedCalibration)})


def calibration_of(evidence: SignedCalibration, identities: int) -> Calibration:
    """The calibration a device records for a gallery it applied from a signed manifest."""
    return Calibration(**evidence.as_dict(), identities=identities, method=CALIBRATION_METHOD)
