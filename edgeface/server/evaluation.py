"""Accuracy on a labelled photo folder: identification (stratified 80/20 splits, top-1) and verification (ROC).

The decision threshold this reports is chosen on the score the daemon actually thresholds: a probe's best
cosine against the identity vectors of *other* people (open set: "if this person were not enrolled"),
pooled over held-out splits, at a chosen false-accept rate.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeface.identity.calibration import identity_vectors
from edgeface.util.files import write_atomic


@dataclass(frozen=True, slots=True)
class EncodedSet:
    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int
    names: tuple[str, ...]  # label -> identity name
    embeddings: np.ndarray  # (N, D); rows of photos without a face are NaN
    found: np.ndarray  # (N,) bool

    def subset(self, keep: np.ndarray) -> EncodedSet:
        return EncodedSet(
            tuple(p for p, k in zip(self.paths, keep, strict=True) if k),
            self.labels[keep],
            self.names,
            self.embeddings[keep],
            self.found[keep],
        )


def difference_hash(image: np.ndarray, size: int = 8) -> int:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def near_duplicates(hashes: list[int], labels: np.ndarray, max_bits: int = 6) -> np.ndarray:
    """Mask of photos that repeat an earlier photo of the same identity (dHash Hamming distance)."""
    duplicate = np.zeros(len(hashes), bool)
    for i in range(len(hashes)):
        for j in range(i):
            if (
                labels[i] == labels[j]
                and not duplicate[j]
                and bin(hashes[i] ^ hashes[j]).count("1") <= max_bits
            ):
                duplicate[i] = True
                break
    return duplicate


def split_80_20(labels: np.ndarray, seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: each identity's photos (in file order) permuted by the seed, first 80% gallery."""
    rng = np.random.default_rng(seed)
    gallery = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen = rng.permutation(members)[: round(train_fraction * len(members))]
        gallery[chosen] = True
    return gallery, ~gallery


def identification(data: EncodedSet, seeds: Iterable[int]) -> dict[str, Any]:
    """Top-1 accuracy per split for per-photo nearest neighbour and for aggregated identity vectors.

    Probes without a detected face count as errors; gallery photos without one are left out."""
    nn_acc, agg_acc, genuine, impostor_best = [], [], [], []
    n_labels = len(data.names)
    for seed in seeds:
        train, test = split_80_20(data.labels, seed)
        train &= data.found
        g_emb, g_lab = data.embeddings[train], data.labels[train]
        probes = np.flatnonzero(test)
        found = data.found[probes]
        p_emb, p_lab = data.embeddings[probes[found]], data.labels[probes[found]]
        scores_nn = p_emb @ g_emb.T
        nn_correct = (g_lab[scores_nn.argmax(1)] == p_lab).sum()
        vectors = identity_vectors(g_emb, g_lab, n_labels)
        scores = p_emb @ vectors.T
        agg_correct = (scores.argmax(1) == p_lab).sum()
        nn_acc.append(nn_correct / len(probes))
        agg_acc.append(agg_correct / len(probes))
        rows = np.arange(len(p_lab))
        genuine.extend(scores[rows, p_lab])
        others = scores.copy()
        others[rows, p_lab] = -np.inf
        impostor_best.extend(others.max(1))
    return {
        "nearest_neighbour": _mean_std(nn_acc),
        "aggregated": _mean_std(agg_acc),
        "splits": len(nn_acc),
        "_genuine": np.asarray(genuine),
        "_impostor_best": np.asarray(impostor_best),
    }


def _mean_std(values: list[float]) -> dict[str, float | list[float]]:
    return {
        "top1_mean": float(np.mean(values)),
        "top1_std": float(np.std(values)),
        "per_split": list(map(float, values)),
    }


def roc(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, Any]:
    """ROC from scores (higher = same person): curve, AUC, EER, TAR at fixed FARs."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    tar = np.searchsorted(np.sort(genuine), thresholds, side="left")
    far = np.searchsorted(np.sort(impostor), thresholds, side="left")
    tar = np.concatenate([[0.0], 1 - tar / len(genuine)])
    far = np.concatenate([[0.0], 1 - far / len(impostor)])
    auc = float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))
    eer_at = int(np.argmin(np.abs(far - (1 - tar))))
    result: dict[str, object] = {  # the report, plus the curve under "_curve" for plotting
        "auc": auc,
        "eer": float((far[eer_at] + 1 - tar[eer_at]) / 2),
        "n_genuine": len(genuine),
        "n_impostor": len(impostor),
    }
    for target in (1e-2, 1e-3):
        ok = far <= target
        result[f"tar_at_far_{target:g}"] = float(tar[ok].max()) if ok.any() else 0.0
    result["_curve"] = (far, tar)
    return result


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Smallest threshold whose false-accept rate on these impostor scores is at most `far`."""
    ordered = np.sort(impostor)
    allowed = int(np.floor(far * len(ordered)))
    return (
        float(np.nextafter(ordered[len(ordered) - allowed - 1], np.inf)) if allowed < len(ordered) else -1.0
    )


def verification_pairs(data: EncodedSet) -> tuple[np.ndarray, np.ndarray]:
    emb, lab = data.embeddings[data.found], data.labels[data.found]
    scores = emb @ emb.T
    upper = np.triu_indices(len(lab), k=1)
    same = (lab[:, None] == lab[None, :])[upper]
    values = scores[upper]
    return values[same], values[~same]


def evaluate(data: EncodedSet, seeds: Iterable[int], far: float) -> dict[str, Any]:
    ident = identification(data, seeds)
    genuine_pairs, impostor_pairs = verification_pairs(data)
    pairs = roc(genuine_pairs, impostor_pairs)
    decision = roc(ident["_genuine"], ident["_impostor_best"])
    threshold = threshold_at_far(ident["_impostor_best"], far)
    tar_at_threshold = float((ident["_genuine"] >= threshold).mean())
    curves = {"pairs": pairs.pop("_curve"), "decision": decision.pop("_curve")}
    return {
        "photos": len(data.paths),
        "faces_found": int(data.found.sum()),
        "detection_rate": float(data.found.mean()),
        "identities": len(data.names),
        "identification": {k: v for k, v in ident.items() if not k.startswith("_")},
        "verification_pairs": pairs,
        "decision_scores": decision,
        "threshold": {
            "far": far,
            "value": threshold,
            "tar": tar_at_threshold,
            "basis": "best score of a probe against other identities' vectors, pooled over splits",
        },
        "_curves": curves,
    }


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4.5))
    for label, (far, tar) in curves.items():
        axis.plot(np.maximum(far, 1e-4), tar, label=label)
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    plt.close(figure)
    write_atomic(path, image.getvalue(), "--plot")
