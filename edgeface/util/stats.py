"""Rolling latency windows and counters for status and metrics."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class LatencyWindow:
    """The last `size` samples of each named stage, in milliseconds."""

    def __init__(self, size: int = 512) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._size = size
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._size)).append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snapshot = {k: np.asarray(v) for k, v in self._samples.items() if v}
        return {
            stage: {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p95": round(float(np.percentile(v, 95)), 2),
            }
            for stage, v in snapshot.items()
        }
