"""How close the int8 model is to its float32 original, and how fast each runs, both through the device runtime.

`measure` runs both models with `edgeface.vision.runtime.TFLiteModel` (the code the device uses) on held-out real
crops; `gate` fails the export when the mean cosine is below the threshold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeface_tools.export import ExportError

from edgeface.vision.runtime import TFLiteModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FidelityReport:
    cosine_mean: float
    cosine_p01: float
    n: int
    auc_float: float | None
    auc_int8: float | None

    def card_entry(self, set_name: str) -> dict[str, object]:
        return {
            "cosine_mean": round(self.cosine_mean, 5),
            "cosine_p01": round(self.cosine_p01, 5),
            "n": self.n,
            "set": set_name,
            "auc_float": None if self.auc_float is None else round(self.auc_float, 5),
            "auc_int8": None if self.auc_int8 is None else round(self.auc_int8, 5),
        }


def embeddings(path: Path, crops: np.ndarray, num_threads: int = 2, batch: int = 8) -> np.ndarray:
    """(N, D) L2-normalised embeddings of normalised float crops, run one batch at a time."""
    with TFLiteModel(path, num_threads=num_threads) as model:
        parts = [model.run(crops[i : i + batch])[0] for i in range(0, len(crops), batch)]
    vectors: np.ndarray = np.concatenate(parts).reshape(len(crops), -1).astype(np.float64)
    normalised: np.ndarray = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return normalised


def verification_auc(vectors: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of cosine similarity over all pairs (same identity = positive): P(pos > neg) + P(tie) / 2."""
    i, j = np.triu_indices(len(vectors), k=1)
    scores = np.einsum("nd,nd->n", vectors[i], vectors[j])
    same = labels[i] == labels[j]
    positives, negatives = scores[same], np.sort(scores[~same])
    if len(positives) == 0 or len(negatives) == 0:
        raise ExportError(
            f"AUC needs same- and different-identity pairs; got {len(positives)}, {len(negatives)}"
        )
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(positives) * len(negatives)))


def measure(
    float_path: Path, int8_path: Path, crops: np.ndarray, labels: np.ndarray | None = None
) -> FidelityReport:
    """Cosine between float32 and int8 embeddings per crop (mean, 1st percentile) and, with labels, the
    verification AUC of each model over all pairs of the crops."""
    if len(crops) == 0:
        raise ExportError("fidelity: no held-out crops to measure on")
    reference = embeddings(Path(float_path), crops)
    quantised = embeddings(Path(int8_path), crops)
    cosines = np.einsum("nd,nd->n", reference, quantised)
    auc_float = auc_int8 = None
    if labels is not None:
        auc_float = verification_auc(reference, np.asarray(labels))
        auc_int8 = verification_auc(quantised, np.asarray(labels))
    report = FidelityReport(
        cosine_mean=float(cosines.mean()),
        cosine_p01=float(np.percentile(cosines, 1)),
        n=len(crops),
        auc_float=auc_float,
        auc_int8=auc_int8,
    )
    log.info("fidelity %s", report)
    return report


def gate(report: FidelityReport, min_mean: float = 0.99, where: str = "") -> None:
    """Raise ExportError when the int8 model's mean cosine to float32 is below `min_mean`.

    `where` (e.g. `layerwise.describe`) names the ops that lose the most fidelity; it goes into the message.
    """
    if not np.isfinite(report.cosine_mean) or report.cosine_mean < min_mean:
        raise ExportError(
            f"int8 fidelity gate failed: mean cosine to float32 {report.cosine_mean:.4f} < {min_mean:.4f} "
            f"(1st percentile {report.cosine_p01:.4f}, n={report.n}, AUC float {report.auc_float} vs int8 "
            f"{report.auc_int8}); check that the calibration photos are real faces aligned like at run time"
            + (f". Ops losing the most cosine (float32 vs int8 activations): {where}" if where else "")
        )


@dataclass(frozen=True, slots=True)
class SpeedReport:
    ms_median: float
    ms_p95: float
    runs: int


def compare_speed(
    paths: dict[str, Path], sample: np.ndarray, runs: int = 50, warmup: int = 5, num_threads: int = 2
) -> dict[str, SpeedReport]:
    """Single-face latency of each model under the default runtime (XNNPACK), measured side by side:
    the models are loaded together and their runs interleaved, so both see the same machine state."""
    models = {name: TFLiteModel(path, num_threads=num_threads) for name, path in paths.items()}
    timings: dict[str, list[float]] = {name: [] for name in models}
    try:
        for _ in range(warmup):
            for model in models.values():
                model.run(sample)
        for _ in range(runs):
            for name, model in models.items():
                start = time.perf_counter()
                model.run(sample)
                timings[name].append((time.perf_counter() - start) * 1e3)
    finally:
        for model in models.values():
            model.close()
    return {
        name: SpeedReport(float(np.median(t)), float(np.percentile(t, 95)), runs)
        for name, t in timings.items()
    }
