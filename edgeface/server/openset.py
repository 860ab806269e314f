"""Open-set evaluation (DIR at FPIR): half the identities enrolled with k photos each, the rest strangers.

DIR: share of enrolled people's other photos matched to the right identity. FPIR: share of strangers' photos
matched to anyone. The default decision rule calibrates each split's gallery on its own enrolment photos
(`Gallery.calibrated`, falling back to the card); fixed thresholds are reported beside it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgeface.identity.calibration import DEFAULT_TARGET_FPIR, calibrate, identity_vectors
from edgeface.identity.rule import CardFallback, resolve_rule


def open_set_split(
    labels: np.ndarray, seed: int, k: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """(enrolled identity ids, enrolment rows per enrolled identity, genuine probe rows, stranger rows)."""
    rng = np.random.default_rng(seed)
    identities = rng.permutation(np.unique(labels))
    enrolled, strangers = identities[: len(identities) // 2], identities[len(identities) // 2 :]
    enrol_rows, probe_rows = [], []
    for identity in enrolled:
        rows = rng.permutation(np.flatnonzero(labels == identity))
        enrol_rows.append(rows[:k])
        probe_rows.append(rows[k:])
    return enrolled, enrol_rows, np.concatenate(probe_rows), np.flatnonzero(np.isin(labels, strangers))


def rates(scores: np.ndarray, truth: np.ndarray | None, threshold: float) -> float:
    best = scores.max(1) >= threshold
    return float(np.mean(best & (scores.argmax(1) == truth)) if truth is not None else np.mean(best))


def open_set(
    embeddings: np.ndarray,
    labels: np.ndarray,
    card: CardFallback | None,
    k: int,
    seeds: Iterable[int],
    fixed: Iterable[float] = (),
    target_fpir: float = DEFAULT_TARGET_FPIR,
) -> dict[str, object]:
    fixed = tuple(fixed)
    rows: dict[str, list[tuple[float, float]]] = {"default": []}
    rows.update((f"fixed {t:g}", []) for t in fixed)
    sources, thresholds = [], []
    for seed in seeds:
        enrolled, enrol_rows, probes, strangers = open_set_split(labels, seed, k)
        gallery_emb = embeddings[np.concatenate(enrol_rows)]
        gallery_lab = np.concatenate([np.full(len(r), i) for i, r in enumerate(enrol_rows)])
        calibration = calibrate(gallery_emb, gallery_lab, target_fpir, 0.0, card.shape if card else None)
        rule = resolve_rule(
            threshold=None, margin=None, calibration=calibration, card=card, identities=len(enrolled)
        )
        sources.append(rule.source)
        thresholds.append(rule.threshold)
        vectors = identity_vectors(gallery_emb, gallery_lab, len(enrolled))
        row_of = {int(identity): i for i, identity in enumerate(enrolled)}
        genuine = embeddings[probes] @ vectors.T
        truth = np.asarray([row_of[int(x)] for x in labels[probes]])
        impostor = embeddings[strangers] @ vectors.T
        for name, threshold in [("default", rule.threshold), *((f"fixed {t:g}", t) for t in fixed)]:
            rows[name].append((rates(genuine, truth, threshold), rates(impostor, None, threshold)))
    return {
        "k": k,
        "splits": len(thresholds),
        "default_rule": {
            "threshold_mean": round(float(np.mean(thresholds)), 4),
            "sources": {s: sources.count(s) for s in sorted(set(sources))},
        },
        "rules": {
            name: {
                "dir": round(float(np.mean([r[0] for r in values])), 4),
                "fpir": round(float(np.mean([r[1] for r in values])), 4),
                "fpir_max": round(float(np.max([r[1] for r in values])), 4),
            }
            for name, values in rows.items()
        },
    }


def _nearest(
    probes: np.ndarray, gallery: np.ndarray, owner: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, identity of the nearest enrolled photo) for each probe."""
    distances = np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=2)
    return distances.min(1) <= tolerance, owner[distances.argmin(1)]


def nearest_photo_open_set(
    encodings: np.ndarray, labels: np.ndarray, k: int, seeds: Iterable[int], tolerance: float
) -> dict[str, object]:
    """The same splits for a peer used as its library intends: a probe is the identity of its nearest
    enrolled photo when that photo's Euclidean distance is at most `tolerance`, else unknown."""
    dirs, fpirs = [], []
    for seed in seeds:
        enrolled, enrol_rows, probes, strangers = open_set_split(labels, seed, k)
        gallery = encodings[np.concatenate(enrol_rows)]
        owner = np.concatenate(
            [np.full(len(r), int(identity)) for identity, r in zip(enrolled, enrol_rows, strict=True)]
        )

        accepted, who = _nearest(encodings[probes], gallery, owner, tolerance)
        dirs.append(float(np.mean(accepted & (who == labels[probes]))))
        fpirs.append(float(np.mean(_nearest(encodings[strangers], gallery, owner, tolerance)[0])))
    return {
        "k": k,
        "splits": len(dirs),
        "rule": f"nearest enrolled photo, Euclidean distance <= {tolerance:g}",
        "dir": round(float(np.mean(dirs)), 4),
        "fpir": round(float(np.mean(fpirs)), 4),
        "fpir_max": round(float(np.max(fpirs)), 4),
    }
