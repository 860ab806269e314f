"""Latency windows: per-stage p50/p95 over the last `size` samples only."""

from __future__ import annotations

import threading

from edgeface.util.stats import LatencyWindow


def test_percentiles_golden_numbers() -> None:
    window = LatencyWindow()
    for ms in range(1, 101):
        window.add("detect", float(ms))
    window.add("embed", 7.0)
    assert window.summary() == {"detect": {"p50": 50.5, "p95": 95.05}, "embed": {"p50": 7.0, "p95": 7.0}}


def test_only_the_last_samples_count() -> None:
    window = LatencyWindow(size=4)
    for ms in (1000.0, 1000.0, 1.0, 2.0, 3.0, 4.0):
        window.add("search", ms)
    assert window.summary()["search"] == {"p50": 2.5, "p95": 3.85}


def test_empty_window_reports_nothing() -> None:
    assert LatencyWindow().summary() == {}


def test_concurrent_adds_are_all_kept() -> None:
    window = LatencyWindow(size=10_000)

    def add() -> None:
        for _ in range(1000):
            window.add("frame_to_event", 5.0)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(window._samples["frame_to_event"]) == 4000
