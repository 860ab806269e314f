"""Open-set calibration of the decision threshold on the population a gallery serves (docs/design.md §5).

A stranger at the door is matched to someone when their best score against the N identity vectors clears the
threshold. Enrolment photos stand in for strangers: each photo is scored against every *other* identity's
vector (impostor scores) and, where a person has two or more photos, leave-one-out against their own
(genuine scores). A gallery of N identities gives N(N-1) identity pairs, far more than its N top-1 samples.

Model (Fisher z = atanh(cosine), where impostor scores are close to Gaussian; the plain cosine's upper tail
is much lighter than a Gaussian's, so a fit there over-estimates it): an impostor score is
`mu + pair effect + photo noise`. The location `mu` comes from the gallery itself, so a population whose
strangers look alike (higher impostor scores) gets a higher threshold. The spread comes from the gallery when it
has enough identity pairs, else from the model card's prior (measured on a large population), and the
uncertainty of `mu` estimated from few pairs widens the prediction. A stranger is matched if any of the N
scores clears the threshold; treating the N scores as independent over-estimates that rate (a stranger's
scores are positively correlated), so the estimate errs on the side of refusing strangers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeface.util.vectors import l2_normalize

DEFAULT_TARGET_FPIR = 0.01
CONFIDENCE_Z = 1.645  # one-sided 95% bound on the location (mean over identity pairs)
MIN_IDENTITIES = 2  # below this there is no impostor score at all
OWN_SHAPE_PAIRS = 90  # ordered identity pairs from which the gallery's own tail shape is trusted (N >= 10)
MIN_EXCEEDANCES = 10  # a tail quantile is read off the data only with at least this many scores beyond it


@dataclass(frozen=True, slots=True)
class TailShape:
    """Shape of the impostor score distribution in Fisher z, relative to its mean over identity pairs:
    `q90` is the 90th percentile's offset, `excess` the mean excess over it (exponential tail beyond),
    `between`/`within` the spread of pair means and of photos within a pair (location uncertainty)."""

    between: float
    within: float
    # (per-identity false-match rate, offset of that upper quantile from the location), rate descending
    quantiles: tuple[tuple[float, float], ...]

    def offset_at(self, rate: float) -> float:
        """Quantile offset at `rate`, interpolated in log(rate); exponential beyond the last point."""
        rates = np.log([r for r, _ in self.quantiles])
        offsets = np.asarray([o for _, o in self.quantiles])
        x = math.log(rate)
        if x <= rates[-1]:
            slope = (offsets[-1] - offsets[-2]) / (rates[-2] - rates[-1])
            return float(offsets[-1] + slope * (rates[-1] - x))
        return float(np.interp(-x, -rates, offsets))

    def as_dict(self) -> dict[str, float | list[list[float]]]:
        return {
            "between": round(self.between, 6),
            "within": round(self.within, 6),
            "quantiles": [[r, round(o, 6)] for r, o in self.quantiles],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TailShape:
        quantiles = tuple((float(r), float(o)) for r, o in raw["quantiles"])
        return cls(float(raw["between"]), float(raw["within"]), quantiles)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A threshold chosen for a target FPIR on one gallery, with its evidence (recorded in the gallery)."""

    threshold: float
    margin: float
    target_fpir: float
    est_fpir: float
    est_dir: float | None  # None when no identity has two photos
    n_impostor: int
    n_genuine: int
    identities: int
    method: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        return cls(
            threshold=float(raw["threshold"]),
            margin=float(raw["margin"]),
            target_fpir=float(raw["target_fpir"]),
            est_fpir=float(raw["est_fpir"]),
            est_dir=None if raw.get("est_dir") is None else float(raw["est_dir"]),
            n_impostor=int(raw["n_impostor"]),
            n_genuine=int(raw["n_genuine"]),
            identities=int(raw.get("identities", 0)),
            method=str(raw.get("method", "")),
        )


def per_identity_rate(target_fpir: float, identities: int) -> float:
    """The false-match rate against one identity that gives `target_fpir` over `identities` of them."""
    return 1.0 - float((1.0 - target_fpir) ** (1.0 / max(identities, 1)))


@dataclass(frozen=True, slots=True)
class ImpostorModel:
    """A new stranger's score against one identity, in Fisher z: location plus the tail shape's offsets."""

    location: float
    shape: TailShape

    def threshold_for(self, target_fpir: float, identities: int) -> float:
        rate = per_identity_rate(target_fpir, identities)
        return math.tanh(self.location + self.shape.offset_at(rate))

    def fpir_at(self, threshold: float, identities: int) -> float:
        """Inverse of `threshold_for` (bisection in log rate)."""
        z = math.atanh(min(max(threshold, -0.999999), 0.999999)) - self.location
        low, high = math.log(1e-12), math.log(0.5)  # offset_at decreases as the rate grows
        for _ in range(60):
            middle = (low + high) / 2
            if self.shape.offset_at(math.exp(middle)) > z:
                low = middle
            else:
                high = middle
        rate = math.exp((low + high) / 2)
        return 1.0 - (1.0 - rate) ** max(identities, 1)


def fisher_z(scores: np.ndarray) -> np.ndarray:
    z: np.ndarray = np.arctanh(np.clip(scores, -0.999999, 0.999999))
    return z


def identity_vectors(embeddings: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    sums = np.zeros((count, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    return l2_normalize(sums)


def impostor_pairs(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(pairs, 2): per ordered identity pair (a photo's identity, another identity), the mean Fisher z of
    a's photos against b's vector, and the number of photos. `z`: (photos, identities) Fisher z scores."""
    count = z.shape[1]
    sums = np.zeros((count, count))
    np.add.at(sums, labels, z)
    photos = np.bincount(labels, minlength=count).astype(np.float64)
    rows = []
    for a in range(count):
        for b in range(count):
            if a != b and photos[a] > 0:
                rows.append((sums[a, b] / photos[a], photos[a]))
    return np.asarray(rows).reshape(-1, 2)


def within_spread(z: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Pooled within-pair standard deviation of impostor Fisher z, and its degrees of freedom."""
    count = z.shape[1]
    squares, freedom = 0.0, 0
    for a in range(count):
        rows = z[labels == a]
        if len(rows) < 2:
            continue
        others = np.delete(rows, a, axis=1)
        squares += float(((others - others.mean(0)) ** 2).sum())
        freedom += others.shape[1] * (len(rows) - 1)
    return (math.sqrt(squares / freedom) if freedom else 0.0), freedom


def tail_quantiles(impostor: np.ndarray, location: float) -> tuple[tuple[float, float], ...]:
    """Upper quantile offsets at rates 10^-1, 10^-1.5, ... while at least MIN_EXCEEDANCES scores lie beyond."""
    rows = []
    for step in range(2, 13):
        rate = 10.0 ** (-step / 2)
        if rate * len(impostor) < MIN_EXCEEDANCES:
            break
        rows.append((rate, float(np.quantile(impostor, 1.0 - rate)) - location))
    return tuple(rows)


def measure_shape(
    embeddings: np.ndarray, labels: np.ndarray, vectors: np.ndarray
) -> tuple[float, TailShape, int]:
    """(location, shape, identity pairs) of this gallery's impostor scores in Fisher z."""
    z = fisher_z(embeddings @ vectors.T)
    impostor = z[labels[:, None] != np.arange(len(vectors))[None, :]]
    pairs = impostor_pairs(z, labels)
    location = float(pairs[:, 0].mean())
    within, within_df = within_spread(z, labels)
    spread_sq = float(pairs[:, 0].var(ddof=1)) if len(pairs) > 1 else 0.0
    between_sq = spread_sq - within**2 * float((1 / pairs[:, 1]).mean()) if within_df else spread_sq
    shape = TailShape(math.sqrt(max(between_sq, 0.0)), within, tail_quantiles(impostor, location))
    return location, shape, len(pairs)


@dataclass(frozen=True, slots=True)
class ImpostorFit:
    """The gallery's impostor model and how uncertain its location is."""

    point: ImpostorModel
    location_se: float
    method: str

    @property
    def bound(self) -> ImpostorModel:
        """The model with its location at a one-sided 95% upper bound: the threshold is chosen on it."""
        return ImpostorModel(self.point.location + CONFIDENCE_Z * self.location_se, self.point.shape)

    def expected_fpir(self, threshold: float, identities: int) -> float:
        """FPIR at `threshold`, averaged over the location's uncertainty (Gauss-Hermite, 9 nodes)."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(9)
        rates = [
            ImpostorModel(self.point.location + self.location_se * x, self.point.shape).fpir_at(
                threshold, identities
            )
            for x in nodes
        ]
        return float(np.dot(weights, rates) / weights.sum())


def fit_impostors(
    embeddings: np.ndarray, labels: np.ndarray, vectors: np.ndarray, prior: TailShape | None
) -> ImpostorFit:
    location, own, _ = measure_shape(embeddings, labels, vectors)
    count = len(vectors)
    enough = count * (count - 1) >= OWN_SHAPE_PAIRS and len(own.quantiles) >= 2
    shape = own if enough or prior is None else prior
    # Both directions of one identity pair carry the same likeness: count unordered pairs.
    unordered = count * (count - 1) / 2
    location_se = math.sqrt((shape.between**2 + shape.within**2 * count / len(embeddings)) / unordered)
    source = "the gallery" if shape is own else "the card's prior"
    method = (
        f"Fisher-z empirical tail, log-linear beyond the data; location from the gallery, shape from {source}"
    )
    return ImpostorFit(ImpostorModel(location, shape), location_se, method)


def genuine_scores(embeddings: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Each photo against the mean of its identity's other photos (identities with >= 2 photos)."""
    sums = np.zeros((count, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    photos = np.bincount(labels, minlength=count)
    keep = photos[labels] >= 2
    rest = l2_normalize(sums[labels[keep]] - embeddings[keep])
    scores: np.ndarray = (embeddings[keep] * rest).sum(1)
    return scores


def calibrate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    margin: float = 0.0,
    prior: TailShape | None = None,
) -> Calibration | None:
    """The threshold meeting `target_fpir` on this gallery, or None when it has too few identities (or,
    without a `prior`, too few impostor scores for two tail quantiles).

    `embeddings` (M, D) are the L2-normalised enrolment embeddings, `labels` (M,) their identity index."""
    labels = np.asarray(labels, np.int64)
    count = int(labels.max()) + 1 if len(labels) else 0
    if count < MIN_IDENTITIES or (prior is None and count * (count - 1) < OWN_SHAPE_PAIRS):
        return None
    vectors = identity_vectors(embeddings, labels, count)
    fit = fit_impostors(embeddings, labels, vectors, prior)
    if len(fit.point.shape.quantiles) < 2:  # no prior, and too few impostor scores to read a tail from
        return None
    threshold = fit.bound.threshold_for(target_fpir, count)
    genuine = genuine_scores(embeddings, labels, count)
    return Calibration(
        threshold=round(threshold, 6),
        margin=margin,
        target_fpir=target_fpir,
        est_fpir=round(fit.expected_fpir(threshold, count), 6),
        est_dir=round(float((genuine >= threshold).mean()), 6) if len(genuine) else None,
        n_impostor=len(embeddings) * (count - 1),
        n_genuine=len(genuine),
        identities=count,
        method=fit.method,
    )


def measure_prior(embeddings: np.ndarray, labels: np.ndarray) -> TailShape:
    """The tail shape a model card records, measured on a large labelled population."""
    labels = np.asarray(labels, np.int64)
    vectors = identity_vectors(embeddings, labels, int(labels.max()) + 1)
    return measure_shape(embeddings, labels, vectors)[1]
